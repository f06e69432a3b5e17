"""``--json`` for every report: the output has exactly the keys of the schema written in
README.md (the examples there are parsed here), secrets never appear, exit codes hold."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import COMPOSE, REPO, dump_text, make_stacks, run_kompose

SECRET = "sekret-pw-4711"


def readme_schema(command: str) -> Any:
    text = (REPO / "README.md").read_text()
    match = re.search(rf"<!-- schema: {re.escape(command)} -->\n```json\n(.*?)\n```", text,
                      re.DOTALL)
    assert match, f"README.md documents no schema for {command}"
    # The run's example carries `// …` comments for the reader.
    return json.loads(re.sub(r"\s+//[^\n]*", "", match[1]))


def shape(value: Any) -> Any:
    """The keys of a document, recursively; a list's shape is that of its first item."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return "value"


def same_shape(real: Any, documented: Any, where: str = "$") -> None:
    if isinstance(documented, dict):
        assert isinstance(real, dict), where
        assert set(real) == set(documented), f"{where}: {sorted(real)} != {sorted(documented)}"
        for key in documented:
            if real[key] is not None and documented[key] is not None:
                same_shape(real[key], documented[key], f"{where}.{key}")
    elif isinstance(documented, list) and documented and real:
        same_shape(real[0], documented[0], f"{where}[0]")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_stacks(tmp_path / "root", {
        "hooks.sh": "hook_pre_up() { :; }\n",
        ".env": "SHARED=root\n",
        "shop": {"compose.yaml": COMPOSE,
                 ".env": f"DB_NAME=shop\nDB_PASSWORD={SECRET}\nSHARED=stack\n",
                 "shop_20250101_000000.sql": dump_text("-- a dump\n"),
                 "hooks.sh": "hook_post_db_export() { :; }\n"},
        "web": {"compose.yaml": COMPOSE,
                "hooks.sh": "hook_pre_up() { :; }\nhook_pre_upp() { :; }\n"},
    })


@pytest.mark.parametrize(("args", "command", "code"), [
    (("--list",), "--list", 0),
    (("*", "db:list"), "db:list", 0),
    (("*", "hooks:list"), "hooks:list", 0),
    (("*", "hooks:check"), "hooks:check", 1),
    (("*", "env:show"), "env:show", 0),
    (("*", "env:check"), "env:check", 0),
])
def test_report_matches_the_readme_schema(root: Path, args: tuple[str, ...], command: str,
                                          code: int) -> None:
    (root / "web" / "hooks.sh").chmod(0o644)
    r = run_kompose("--root", str(root), "--json", *args)
    assert r.code == code, r.err
    doc = json.loads(r.out)  # stdout is the document and nothing else
    assert doc["command"] == command and doc["schema"] == 1
    same_shape(doc, readme_schema(command))
    assert SECRET not in r.all


def test_report_contents(root: Path) -> None:
    listed = json.loads(run_kompose("--root", str(root), "--json", "--list").out)
    by = {s["stack"]: s for s in listed["stacks"]}
    assert by["shop"]["database"] == "shop" and by["shop"]["dumps"] == 1
    assert by["web"]["database"] is None and by["web"]["env_file"] is None
    assert by["web"]["hooks"] == ["hook_pre_up", "hook_pre_upp"]
    assert listed["root_hooks"] == ["hook_pre_up"]
    dumps = json.loads(run_kompose("--root", str(root), "--json", "shop", "db:list").out)
    (entry,) = dumps["stacks"][0]["dumps"]
    assert entry["file"] == str(root / "shop" / "shop_20250101_000000.sql")
    assert entry["size"] == len(dump_text("-- a dump\n")) and entry["complete"] is True
    check = json.loads(run_kompose("--root", str(root), "--json", "web", "hooks:check").out)
    assert check["ok"] is False and check["errors"] == 1
    (finding,) = next(f for f in check["files"] if f["file"].endswith("web/hooks.sh"))["findings"]
    assert finding["line"] == 2 and "hook_pre_up?" in finding["message"]
    clean = run_kompose("--root", str(root), "--json", "shop", "hooks:check")
    assert clean.code == 0 and json.loads(clean.out)["ok"] is True


def test_status_document_matches_the_readme_schema_without_an_engine(root: Path) -> None:
    """An unreachable engine still gives a complete document (the real engine's case is in
    test_status.py)."""
    r = run_kompose("--root", str(root), "--json", "--status",
                    env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert r.code == 1
    doc = json.loads(r.out)
    same_shape(doc, readme_schema("--status"))
    assert all(s["error"] for s in doc["stacks"])
    assert doc["stacks"][0]["newest_dump"]["file"].endswith("shop_20250101_000000.sql")


def test_run_document_matches_the_readme_schema_and_names_each_orchestrator(root: Path) -> None:
    """A run's document (not a report's): each stack says which orchestrator ran it, as
    --list and --status do. A dry-run of `up` needs no engine."""
    (root / "web" / ".env").write_text("KOMPOSE_ORCHESTRATOR=swarm\n")
    r = run_kompose("--root", str(root), "--json", "--dry-run", "*", "up", "-d",
                    env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    documented = readme_schema("run")
    # summary counts by status: its keys are the statuses that occurred.
    assert doc.pop("summary") == {"success": 2} and documented.pop("summary")
    same_shape(doc, documented)
    assert {s["stack"]: s["orchestrator"] for s in doc["stacks"]} == {"shop": "compose",
                                                                      "web": "swarm"}
    assert SECRET not in r.all
