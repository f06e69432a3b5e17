"""The house's rules, checked on the code itself: each kompose command named in its table
row and its implementation only, no import circles, no module far over 600 lines, and a
command's own --help."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from kompose_py.commands import TABLE
from tests.conftest import make_stacks, run_kompose

PACKAGE = Path(__file__).resolve().parents[1] / "kompose_py"


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def test_each_kompose_command_is_named_by_its_row_and_its_implementation_only() -> None:
    for spec in TABLE:
        naming = sorted(name for name, path in modules().items()
                        if re.search(rf"[\"'`]{re.escape(spec.name)}\b", path.read_text()))
        implementation = spec.implementation.partition(":")[0]
        assert set(naming) <= {"kompose_py.commands", implementation}, (spec.name, naming)


def test_no_import_circles_and_no_oversized_module() -> None:
    found = modules()
    graph: dict[str, set[str]] = {}
    for name, path in found.items():
        tree = ast.parse(path.read_text())
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    targets.add(full if full in found else node.module)
            elif isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
        graph[name] = {t for t in targets if t in found and t != name}
        assert len(path.read_text().splitlines()) <= 600, name

    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                loop = [*trail[trail.index(nxt):], node, nxt] if nxt in trail else [node, nxt]
                raise AssertionError("import circle: " + " -> ".join(loop))
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def test_a_kompose_commands_help_and_options(tmp_path: Path) -> None:
    root = make_stacks(tmp_path, {"shop": {"compose.yaml": "services: {}\n",
                                           ".env": "DB_NAME=shop\n"}})
    r = run_kompose("--root", str(root), "shop", "db:export", "--help")
    assert r.code == 0 and "--compress" in r.out, r.all
    r = run_kompose("--root", str(root), "shop", "db:cleanup", "--kep", "2")
    assert r.code == 2 and "db:cleanup" in r.err and "--kep" in r.err, r.err
    r = run_kompose("--help")
    for spec in TABLE:
        assert spec.name in r.out, spec.name
    r = run_kompose("--root", str(root), "shop", "db:shell", "--help")
    assert r.code == 0 and "psql" in r.out, r.all
