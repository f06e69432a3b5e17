"""``kompose --list``: one row per stack (compose file, .env, dumps, database, hooks)."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from kompose_py import hooks, stacks
from kompose_py.cli.output import Painter
from kompose_py.dumps import find_dumps
from kompose_py.envfiles import EnvBuilder


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
