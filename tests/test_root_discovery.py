"""Root discovery as git finds its repository, and the pattern ``.`` for "this stack"."""

from __future__ import annotations

from pathlib import Path

import pytest

from kompose_py.errors import UsageError
from kompose_py.stacks import discover, find_root, select
from tests.conftest import COMPOSE, make_stacks, run_kompose


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder with its stacks in ./stacks, and a deep folder inside one stack."""
    make_stacks(tmp_path / "proj" / "stacks", {
        "web": {"compose.yaml": COMPOSE, "www": {"css": {"site.css": "x"}}},
        "db": {"compose.yaml": COMPOSE},
    })
    (tmp_path / "proj" / "docs" / "deep").mkdir(parents=True)
    return tmp_path / "proj"


def test_found_from_the_project_from_a_stack_and_from_deep_inside_it(project: Path) -> None:
    root = project / "stacks"
    assert find_root(project) == root                                  # ./stacks
    assert find_root(root) == root                                     # the current folder
    assert find_root(root / "web") == root                             # a stack folder
    assert find_root(root / "web" / "www" / "css") == root             # deep inside a stack
    assert find_root(project / "docs" / "deep") == root                # upwards, then ./stacks


def test_a_stack_holding_a_compose_project_of_its_own(tmp_path: Path) -> None:
    """An upstream checkout inside a stack (``app/src/docker-compose.yml``) does not make the
    stack a root: from inside it, kompose still finds the root above, and ``.`` is the stack."""
    root = make_stacks(tmp_path / "srv", {
        "app": {"compose.yaml": COMPOSE, "src": {"docker-compose.yml": COMPOSE, "lib": {}}},
        "web": {"compose.yaml": COMPOSE},
    })
    for where in (root / "app", root / "app" / "src", root / "app" / "src" / "lib"):
        assert find_root(where) == root, where
    r = run_kompose("-n", ".", "up", "-d", cwd=root / "app")
    assert r.code == 0, r.err
    assert "▶ app" in r.err and "▶ web" not in r.err and "▶ src" not in r.err


def test_a_root_with_a_compose_file_of_its_own_stays_the_root(tmp_path: Path) -> None:
    root = make_stacks(tmp_path / "only", {"compose.yaml": COMPOSE,
                                           "web": {"compose.yaml": COMPOSE}})
    assert find_root(root) == root  # its folder above holds no other stack


@pytest.mark.parametrize("where", ["stacks/web", "stacks/web/www/css", "docs/deep"])
def test_cli_lists_the_same_stacks_from_anywhere_inside(project: Path, where: str) -> None:
    r = run_kompose("--list", cwd=project / where)
    assert r.code == 0, r.err
    assert f"2 stacks in {project / 'stacks'}" in r.out


def test_dot_is_the_stack_of_the_current_folder(project: Path) -> None:
    r = run_kompose("-n", ".", "up", "-d", cwd=project / "stacks" / "web" / "www")
    assert r.code == 0, r.err
    assert "▶ web" in r.err and "▶ db" not in r.err
    r = run_kompose("-n", "*,!.", "ps", cwd=project / "stacks" / "web")
    assert r.code == 0, r.err
    assert "▶ db" in r.err and "▶ web" not in r.err


def test_dot_outside_a_stack_is_a_usage_error(project: Path) -> None:
    r = run_kompose("-n", ".", "ps", cwd=project / "docs")
    assert r.code == 2
    assert "'.' means the stack of the current folder" in r.err
    assert f"is not inside a stack folder of {project / 'stacks'}" in r.err
    with pytest.raises(UsageError):
        select(discover(project / "stacks"), ".", project / "stacks", cwd=project)


def test_a_stack_named_like_a_glob_is_matched_only_by_itself(tmp_path: Path) -> None:
    root = make_stacks(tmp_path / "r", {"a[1]": {"compose.yaml": COMPOSE},
                                        "a1": {"compose.yaml": COMPOSE}})
    chosen = select(discover(root), ".", root, cwd=root / "a[1]")
    assert [s.name for s in chosen] == ["a[1]"]


def test_no_stacks_anywhere_names_root_option_and_variable(tmp_path: Path) -> None:
    (tmp_path / "stacks").mkdir()  # exists, empty: chosen, and says so
    for args in (("*", "ps"), ("--list",), ("--status",), (".", "ps"), ("--list", ".")):
        r = run_kompose(*args, cwd=tmp_path)
        assert r.code == 3, (args, r.err)
        assert "no stacks in" in r.err and "--root" in r.err and "KOMPOSE_ROOT" in r.err


def test_status_takes_only_a_pattern(project: Path) -> None:
    r = run_kompose("--status", "web", "up", cwd=project)
    assert r.code == 2 and "--status takes only a PATTERN, got 'up'" in r.err


@pytest.mark.parametrize("value", ["", " "])
def test_an_empty_root_option_is_a_usage_error(project: Path, value: str) -> None:
    """`--root "$UNSET"` must not mean "wherever I am" (issue 12.7)."""
    r = run_kompose("--root", value, "*", "ps", cwd=project / "stacks" / "web")
    assert r.code == 2, r.err
    assert r.err.splitlines()[0] == "kompose: error: --root needs a folder, got an empty value"
