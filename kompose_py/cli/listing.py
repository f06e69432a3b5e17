"""``kompose --list``: one row per stack (compose file, .env, dumps, database, hooks)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from kompose_py import hooks, stacks
from kompose_py.backends.choose import backend_for
from kompose_py.cli.output import Painter, plural, relative
from kompose_py.cli.report import write_report
from kompose_py.db.dumpfiles import dump_dir_problem, dump_folder, find_dumps
from kompose_py.envfiles import EnvBuilder
from kompose_py.errors import KomposeError
from kompose_py.runner.run import Runner

if TYPE_CHECKING:
    from kompose_py.commands import ReportRequest


def list_stacks(root: Path, pattern: str, builder: EnvBuilder, out: TextIO, color: bool,
                as_json: bool, runner: Runner) -> int:
    paint = Painter(color)
    selected = stacks.select(stacks.discover(root), pattern, root)
    rows: list[tuple[str, ...]] = [("STACK", "ORCHESTRATOR", "COMPOSE FILE", ".ENV", "DUMPS",
                                     "DATABASE", "DB VIA", "HOOKS")]
    from kompose_py.db.reach import describe_access
    from kompose_py.db.recovery import interrupted_import
    from kompose_py.db.settings import settings_for

    root_hooks = hooks.defined_functions(root / "hooks.sh")
    items: list[dict[str, Any]] = []
    for stack in selected:
        env = builder.for_stack(stack.env_file)
        try:
            settings = settings_for(env)
        except KomposeError:
            settings = None
        backend = backend_for(env.values)
        compose_files = backend.files(stack, env.values)
        files = ",".join(relative(f, stack.path) for f in compose_files)
        db = settings.name if settings else ""
        # An unmounted DB_DUMP_DIR is no count (null), not "0 dumps".
        lost = bool(db) and dump_dir_problem(stack, env.values) is not None
        count = len(find_dumps(dump_folder(stack, env.values), db)) if db and not lost \
            else None
        dumps = "-" if not db else "? (no DB_DUMP_DIR)" if lost else str(count)
        via, access = describe_access(stack, env, runner) if settings else ("-", None)
        leftover = interrupted_import(stack) if settings else None
        names = sorted(hooks.defined_functions(stack.hooks_file))
        hook_text = ", ".join(n.removeprefix("hook_") for n in names) or "-"
        items.append({"stack": stack.name, "path": str(stack.path),
                      "orchestrator": backend.name,
                      "compose_files": [str(f) for f in compose_files],
                      "env_file": str(stack.env_file) if stack.env_file.is_file() else None,
                      "database": db or None,
                      "dumps": count,
                      "access": access, "interrupted_import": leftover,
                      "hooks": names})
        if leftover:
            via += " [INTERRUPTED IMPORT: run db:recover]"
        rows.append((stack.name, backend.name, files,
                     "yes" if stack.env_file.is_file() else "-", dumps, db or "-", via,
                     hook_text))
    if as_json:
        write_report(out, "--list", {"root": str(root), "root_hooks": sorted(root_hooks),
                                       "stacks": items})
        return 0
    if all(item["orchestrator"] == "compose" for item in items):
        rows = [(r[0], *r[2:]) for r in rows]  # Compose only: the column says nothing
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


def list_db_dumps(request: ReportRequest) -> int:
    """``kompose PATTERN db:list``: each database stack's dumps, oldest first."""
    from kompose_py.db.dumpfiles import human_size
    from kompose_py.db.postgres.formats import dump_kind
    from kompose_py.db.recovery import interrupted_import
    from kompose_py.db.settings import is_database_stack
    from kompose_py.db.upkeep import list_dumps

    envs, selected, out = request.envs(), request.selected, request.out
    paint = Painter(request.color)
    # A DB_DUMP_DIR that is missing (a share not mounted) is an error of that stack: exit 1.
    problems = {s.name: dump_dir_problem(s, envs[s.name].values)
                if is_database_stack(envs[s.name]) else None for s in selected}
    code = 1 if any(problems.values()) else 0
    if request.as_json:
        items = []
        for stack in selected:
            db, dumps = list_dumps(stack, envs[stack.name])
            items.append({"stack": stack.name, "database": db.name if db else None,
                          "dump_dir": str(dump_folder(stack, envs[stack.name].values))
                          if db else None,
                          "error": problems[stack.name],
                          "dumps": [{"file": str(i.dump.path), "size": i.size,
                                     **dump_kind(i.dump.path),
                                     "age_seconds": round(i.age_seconds),
                                     "complete": i.problem is None, "problem": i.problem}
                                    for i in dumps],
                          "interrupted_import": interrupted_import(stack) if db else None})
        write_report(out, request.command, {"stacks": items})
        return code
    for stack in selected:
        db, dumps = list_dumps(stack, envs[stack.name])
        if db is None:
            out.write(f"{paint('⊘', 'yellow')} {stack.name}: no DB_NAME in its .env\n")
            continue
        if problems[stack.name]:
            out.write(f"{paint('✗', 'red')} {stack.name} ({db.name}): "
                      f"{problems[stack.name]}\n")
            continue
        folder = dump_folder(stack, envs[stack.name].values)
        where = f" in {folder}" if folder != stack.path else ""
        out.write(paint(f"{stack.name} ({db.name}): {plural(len(dumps), 'dump')}{where}",
                        "bold") + "\n")
        for info in dumps:
            mark = "" if info.problem is None else "  " + paint(
                f"{'DAMAGED' if info.damaged else 'INCOMPLETE'}: {info.problem}",
                "red")
            out.write(f"  {info.dump.path.name}  {human_size(info.size):>9}  "
                      f"{age(info.age_seconds)}{mark}\n")
        leftover = interrupted_import(stack)
        if leftover:
            out.write("  " + paint(leftover, "red") + "\n")
    return code


def list_hooks(request: ReportRequest) -> int:
    """``kompose PATTERN hooks:list``: per stack, the hooks that apply and where they live."""
    from kompose_py.hookcheck import list_hooks as find

    request.envs()  # an unreadable .env is an error here too
    root, selected, out = request.root, request.selected, request.out
    paint = Painter(request.color)
    if request.as_json:
        write_report(out, request.command, {"stacks": [
            {"stack": stack.name, "hooks": [
                {"function": h.function, "command": h.command, "file": str(h.file),
                 "line": h.line, "scope": h.scope}
                for h in find(root / "hooks.sh", stack.hooks_file)]}
            for stack in selected]})
        return 0
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


def check_hooks(request: ReportRequest) -> int:
    """``kompose PATTERN hooks:check``: exit 1 when any hooks file has an error."""
    from kompose_py.hookcheck import check_file

    envs = request.envs()  # an unreadable .env is an error here too
    root, selected, out, as_json = request.root, request.selected, request.out, \
        request.as_json
    refusals = {s.hooks_file: backend_for(envs[s.name].values).refusal for s in selected}
    paint = Painter(request.color)
    runner = request.runner
    files = [root / "hooks.sh"] + [s.hooks_file for s in selected]
    errors = warnings = checked = 0
    report: list[dict[str, Any]] = []
    for path in files:
        if not path.is_file():
            continue
        checked += 1
        findings = check_file(path, runner, refusals.get(path))
        report.append({"file": str(path), "findings": [
            {"level": f.level, "line": f.line, "message": f.message} for f in findings]})
        if as_json:
            errors += sum(f.level == "error" for f in findings)
            warnings += sum(f.level == "warning" for f in findings)
            continue
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
    if as_json:
        write_report(out, request.command, {"ok": not errors, "checked": checked,
                                            "errors": errors, "warnings": warnings,
                                            "files": report})
        return 1 if errors else 0
    out.write(f"{plural(checked, 'hooks file')} checked: {plural(errors, 'error')}, "
              f"{plural(warnings, 'warning')}\n")
    return 1 if errors else 0
