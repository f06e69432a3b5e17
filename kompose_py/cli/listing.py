"""``kompose --list``: one row per stack (compose file, .env, dumps, database, hooks)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from kompose_py import hooks, stacks
from kompose_py.cli.output import Painter, plural, relative
from kompose_py.dumps import find_dumps
from kompose_py.envfiles import EnvBuilder, StackEnv
from kompose_py.stacks import Stack


def list_stacks(root: Path, pattern: str, builder: EnvBuilder, out: TextIO, color: bool) -> int:
    paint = Painter(color)
    selected = stacks.select(stacks.discover(root), pattern, root)
    rows = [("STACK", "COMPOSE FILE", ".ENV", "DUMPS", "DATABASE", "HOOKS")]
    from kompose_py.database import settings_for

    root_hooks = hooks.defined_functions(root / "hooks.sh")
    for stack in selected:
        env = builder.for_stack(stack.env_file)
        settings = settings_for(env)
        files = ",".join(relative(f, stack.path) for f in stack.compose_files(env.values))
        db = settings.name if settings else ""
        dumps = str(len(find_dumps(stack.path, db))) if db else "-"
        names = sorted(hooks.defined_functions(stack.hooks_file))
        hook_text = ", ".join(n.removeprefix("hook_") for n in names) or "-"
        rows.append((stack.name, files,
                     "yes" if stack.env_file.is_file() else "-", dumps, db or "-", hook_text))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for n, row in enumerate(rows):
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])] + [row[-1]]
        text = "  ".join(cells).rstrip()
        out.write((paint(text, "bold") if n == 0 else text) + "\n")
    extra = f"; root hooks: {', '.join(sorted(h.removeprefix('hook_') for h in root_hooks))}" \
        if root_hooks else ""
    out.write(f"{plural(len(selected), 'stack')} in {root}{extra}\n")
    return 0


def age(seconds: float) -> str:
    if seconds < 0:
        return "in the future"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"


def list_db_dumps(selected: Sequence[Stack], envs: dict[str, StackEnv], out: TextIO,
                  color: bool) -> int:
    """``kompose PATTERN db:list``: each database stack's dumps, oldest first."""
    from kompose_py.database import human_size, list_dumps

    paint = Painter(color)
    for stack in selected:
        db, dumps = list_dumps(stack, envs[stack.name])
        if db is None:
            out.write(f"{paint('⊘', 'yellow')} {stack.name}: no DB_NAME in its .env\n")
            continue
        out.write(paint(f"{stack.name} ({db.name}): {plural(len(dumps), 'dump')}", "bold") + "\n")
        for info in dumps:
            out.write(f"  {info.dump.path.name}  {human_size(info.size):>9}  "
                      f"{age(info.age_seconds)}\n")
    return 0


def list_hooks(root: Path, selected: Sequence[Stack], out: TextIO, color: bool) -> int:
    """``kompose PATTERN hooks:list``: per stack, the hooks that apply and where they live."""
    from kompose_py.hookcheck import list_hooks as find

    paint = Painter(color)
    for stack in selected:
        found = find(root / "hooks.sh", stack.hooks_file)
        out.write(paint(f"{stack.name}: {plural(len(found), 'hook')}",
                        "bold") + "\n")
        width = max((len(h.function) for h in found), default=0)
        for h in found:
            command = h.command or "(no command: never runs)"
            scope = " (root)" if h.scope == "root" else ""
            out.write(f"  {h.function.ljust(width)}  {command:<12}  "
                      f"{relative(h.file, root)}:{h.line}{scope}\n")
    return 0


def check_hooks(root: Path, selected: Sequence[Stack], out: TextIO, color: bool) -> int:
    """``kompose PATTERN hooks:check``: exit 1 when any hooks file has an error."""
    from kompose_py.hookcheck import check_file
    from kompose_py.runner import Runner

    paint = Painter(color)
    runner = Runner()
    files = [root / "hooks.sh"] + [s.hooks_file for s in selected]
    errors = warnings = checked = 0
    for path in files:
        if not path.is_file():
            continue
        checked += 1
        findings = check_file(path, runner)
        mark = paint("✓", "green") if not findings else (
            paint("✗", "red") if any(f.level == "error" for f in findings)
            else paint("!", "yellow"))
        out.write(f"{mark} {relative(path, root)}\n")
        for f in findings:
            label = paint(f.level, "red" if f.level == "error" else "yellow")
            out.write(f"  {label}: {relative(path, root)}{':' + str(f.line) if f.line else ''}: "
                      f"{f.message}\n")
            errors += f.level == "error"
            warnings += f.level == "warning"
    out.write(f"{plural(checked, 'hooks file')} checked: {plural(errors, 'error')}, "
              f"{plural(warnings, 'warning')}\n")
    return 1 if errors else 0
