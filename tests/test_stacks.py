"""Stacks and patterns, through the core and through the real CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from kompose_py.errors import NoStackError, UsageError
from kompose_py.stacks import discover, parse_pattern, resolve_root, select
from tests.conftest import COMPOSE, make_stacks, run_kompose


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_stacks(tmp_path / "root", {
        "web": {"compose.yaml": COMPOSE},
        "news": {"compose.yml": COMPOSE},
        "blog": {"docker-compose.yaml": COMPOSE},
        "shop": {"docker-compose.yml": COMPOSE},
        "Zeta": {"compose.yaml": COMPOSE},
        "both": {"docker-compose.yml": COMPOSE, "compose.yaml": COMPOSE},
        ".hidden": {"compose.yaml": COMPOSE},
        "notes": {"README.md": "not a stack"},
        "file.yaml": COMPOSE,
    })


def test_discover_finds_the_four_names_skips_hidden_and_orders_by_code_point(root: Path) -> None:
    found = discover(root)
    assert [s.name for s in found] == ["Zeta", "blog", "both", "news", "shop", "web"]
    files = {s.name: s.compose_file.name for s in found}
    assert files["news"] == "compose.yml"
    assert files["blog"] == "docker-compose.yaml"
    assert files["shop"] == "docker-compose.yml"
    assert files["both"] == "compose.yaml"  # first found in the documented order


@pytest.mark.parametrize(("pattern", "expected"), [
    ("*", ["Zeta", "blog", "both", "news", "shop", "web"]),
    ("web", ["web"]),
    ("news,blog", ["blog", "news"]),  # stack order, not pattern order
    (" news , blog ", ["blog", "news"]),
    ("b*", ["blog", "both"]),
    ("?eb", ["web"]),
    ("[bs]*", ["blog", "both", "shop"]),
    ("*,!news", ["Zeta", "blog", "both", "shop", "web"]),
    ("*, !b*, !web", ["Zeta", "news", "shop"]),
    ("!news", ["Zeta", "blog", "both", "shop", "web"]),
    ("web,web,w*", ["web"]),
    ("z*", []),  # globs are case-sensitive
])
def test_select(root: Path, pattern: str, expected: list[str]) -> None:
    stacks = discover(root)
    if not expected:
        with pytest.raises(NoStackError):
            select(stacks, pattern, root)
        return
    assert [s.name for s in select(stacks, pattern, root)] == expected


def test_empty_pattern_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        parse_pattern(" , ")


def test_no_match_exits_3_naming_available_stacks(root: Path) -> None:
    r = run_kompose("--root", str(root), "nope*", "ps")
    assert r.code == 3
    assert "no stack matches 'nope*'" in r.err
    assert "available stacks: Zeta, blog, both, news, shop, web" in r.err


def test_no_stacks_at_all_exits_3(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    r = run_kompose("--root", str(tmp_path / "empty"), "*", "ps")
    assert r.code == 3
    assert "no stacks in" in r.err


def test_root_resolution_order(tmp_path: Path) -> None:
    (tmp_path / "stacks").mkdir()
    (tmp_path / "other").mkdir()
    assert resolve_root(None, {}, tmp_path) == tmp_path / "stacks"
    assert resolve_root(None, {"KOMPOSE_ROOT": str(tmp_path / "other")}, tmp_path) == \
        tmp_path / "other"
    assert resolve_root("other", {"KOMPOSE_ROOT": "/nonexistent"}, tmp_path) == tmp_path / "other"
    make_stacks(tmp_path / "other", {"web": {"compose.yaml": COMPOSE}})
    assert resolve_root(None, {}, tmp_path / "other") == tmp_path / "other"
    with pytest.raises(UsageError):
        resolve_root("missing", {}, tmp_path)


def test_cli_uses_stacks_folder_of_the_current_directory(tmp_path: Path) -> None:
    make_stacks(tmp_path / "stacks", {"only": {"compose.yaml": COMPOSE}})
    r = run_kompose("--list", cwd=tmp_path)
    assert r.code == 0
    assert "only" in r.out
