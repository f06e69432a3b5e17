"""``kompose --list``: one row per stack (compose file, .env, dumps, database, hooks)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from kompose_py import hooks, stacks
from kompose_py.cli.output import Painter
from kompose_py.dumps import find_dumps
from kompose_py.envfiles import EnvBuilder, StackEnv
from kompose_py.stacks import Stack


def list_stacks(root: Path, pattern: str, builder: EnvBuilder, out: TextIO, color: bool) -> int:
    paint = Painter(color)
    selected = stacks.select(stacks.discover(root), pattern, root)
    rows = [("STACK", "COMPOSE FILE", ".ENV", "DUMPS", "DATABASE", "HOOKS")]
    root_hooks = hooks.defined_functions(root / "hooks.sh")
    for stack in selected:
        env = builder.for_stack(stack.env_file)
        db = env.values.get("DB_NAME", "") if "DB_NAME" in env.own_keys else ""
        dumps = str(len(find_dumps(stack.path, db))) if db else "-"
        names = sorted(hooks.defined_functions(stack.hooks_file))
        hook_text = ", ".join(n.removeprefix("hook_") for n in names) or "-"
        rows.append((stack.name, stack.compose_file.name,
                     "yes" if stack.env_file.is_file() else "-", dumps, db or "-", hook_text))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for n, row in enumerate(rows):
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])] + [row[-1]]
        text = "  ".join(cells).rstrip()
        out.write((paint(text, "bold") if n == 0 else text) + "\n")
    extra = f"; root hooks: {', '.join(sorted(h.removeprefix('hook_') for h in root_hooks))}" \
        if root_hooks else ""
    out.write(f"{len(selected)} stack{'s' if len(selected) != 1 else ''} in {root}{extra}\n")
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
        count = f"{len(dumps)} dump{'s' if len(dumps) != 1 else ''}"
        out.write(paint(f"{stack.name} ({db.name}): {count}", "bold") + "\n")
        for info in dumps:
            out.write(f"  {info.dump.path.name}  {human_size(info.size):>9}  "
                      f"{age(info.age_seconds)}\n")
    return 0


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def list_hooks(root: Path, selected: Sequence[Stack], out: TextIO, color: bool) -> int:
    """``kompose PATTERN hooks:list``: per stack, the hooks that apply and where they live."""
    from kompose_py.hookcheck import list_hooks as find

    paint = Painter(color)
    for stack in selected:
        found = find(root / "hooks.sh", stack.hooks_file)
        out.write(paint(f"{stack.name}: {len(found)} hook{'s' if len(found) != 1 else ''}",
                        "bold") + "\n")
        width = max((len(h.function) for h in found), default=0)
        for h in found:
            command = h.command or "(no command: never runs)"
            out.write(f"  {h.function.ljust(width)}  {command:<12}  "
                      f"{_rel(h.file, root)}:{h.line}{' (root)' if h.scope == 'root' else ''}\n")
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
        out.write(f"{mark} {_rel(path, root)}\n")
        for f in findings:
            label = paint(f.level, "red" if f.level == "error" else "yellow")
            out.write(f"  {label}: {_rel(path, root)}{':' + str(f.line) if f.line else ''}: "
                      f"{f.message}\n")
            errors += f.level == "error"
            warnings += f.level == "warning"
    out.write(f"{checked} hooks file{'s' if checked != 1 else ''} checked: "
              f"{errors} error{'s' if errors != 1 else ''}, "
              f"{warnings} warning{'s' if warnings != 1 else ''}\n")
    return 1 if errors else 0
