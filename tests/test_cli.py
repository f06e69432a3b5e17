"""The command line: options before PATTERN, passthrough after COMMAND."""

from __future__ import annotations

from pathlib import Path

import pytest

from kompose_py import __version__
from tests.conftest import COMPOSE, Shim, make_stacks, run_kompose


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_stacks(tmp_path / "root", {
        "blog": {"compose.yaml": COMPOSE},
        "news": {"docker-compose.yml": COMPOSE},
    })


def compose_argv(shim: Shim) -> list[list[str]]:
    return [c["argv"] for c in shim.calls()]


def test_version_and_help(root: Path) -> None:
    r = run_kompose("--version")
    assert (r.code, r.out.strip()) == (0, f"kompose-py {__version__}")
    r = run_kompose("--help")
    assert r.code == 0
    assert "PATTERN COMMAND" in r.out
    assert "--dry-run" in r.out and "--network" in r.out
    assert run_kompose("-h").code == 0


@pytest.mark.parametrize(("args", "message"), [
    ([], "missing PATTERN and COMMAND"),
    (["blog"], "missing COMMAND after pattern 'blog'"),
    (["--bogus", "blog", "ps"], "No such option: --bogus"),
    (["-e", "NOEQUALS", "blog", "ps"], "-e 'NOEQUALS': expected KEY=VALUE"),
    (["-e", "1BAD=x", "blog", "ps"], "'1BAD' is not a valid variable name"),
    (["-e", "BAD-KEY=x", "blog", "ps"], "'BAD-KEY' is not a valid variable name"),
    (["blog", "--dry-run", "ps"], "expected a COMMAND after the pattern"),
    (["blog", "db:exprot"], "unknown kompose command 'db:exprot'"),
    (["--hook-timeout", "0", "blog", "ps"], "--hook-timeout must be a positive number"),
    (["--root", "/does/not/exist", "blog", "ps"], "is not a directory"),
])
def test_usage_errors_exit_2_with_one_line_and_run_nothing(
        root: Path, shim: Shim, args: list[str], message: str) -> None:
    if "--root" not in args:
        args = ["--root", str(root), *args]
    r = run_kompose(*args, env=shim.env())
    assert r.code == 2, r.err
    lines = r.err.strip().splitlines()
    assert lines[0].startswith("kompose: error: ")
    assert message in lines[0]
    assert len(lines) <= 2 and all(line.startswith("kompose: ") for line in lines)
    assert r.out == ""
    assert shim.calls() == []


def test_a_kompose_commands_help_needs_no_pattern(root: Path, shim: Shim) -> None:
    for flag in ("--help", "-h"):
        r = run_kompose("--root", str(root), "db:cleanup", flag, env=shim.env())
        assert r.code == 0, r.err
        assert r.out.startswith("usage: kompose PATTERN db:cleanup") and "--keep-within" in r.out
    assert "usage: kompose PATTERN db:shell" in run_kompose("db:shell", "--help").out
    # A compose command's help is compose's: it still needs its stack.
    r = run_kompose("--root", str(root), "up", "--help", env=shim.env())
    assert r.code == 2 and "expected a COMMAND after the pattern" in r.err
    assert shim.calls() == []


def test_typo_in_kompose_command_suggests_the_closest(root: Path) -> None:
    r = run_kompose("--root", str(root), "blog", "db:exprot")
    assert "did you mean db:export?" in r.err


def test_bad_hook_timeout_env_is_a_usage_error(root: Path) -> None:
    r = run_kompose("--root", str(root), "blog", "ps", env={"KOMPOSE_HOOK_TIMEOUT": "soon"})
    assert r.code == 2
    assert "KOMPOSE_HOOK_TIMEOUT='soon' is not a number" in r.err


def test_compose_flags_after_command_reach_compose_untouched(root: Path, shim: Shim) -> None:
    r = run_kompose("--root", str(root), "blog", "logs", "-n", "50", "-f", env=shim.env())
    assert r.code == 0, r.err
    r = run_kompose("--root", str(root), "blog", "exec", "-e", "A=1", "web", "sh", "-c", "x y",
                    env=shim.env())
    assert r.code == 0, r.err
    assert compose_argv(shim) == [
        ["compose", "logs", "-n", "50", "-f"],
        ["compose", "exec", "-e", "A=1", "web", "sh", "-c", "x y"],
    ]


def test_global_env_option_is_never_passed_to_compose(root: Path, shim: Shim) -> None:
    r = run_kompose("--root", str(root), "-e", "TAG=1.2", "--network", "staging", "*", "up",
                    "-d", env=shim.env())
    assert r.code == 0, r.err
    for call in shim.calls():
        assert call["argv"] == ["compose", "up", "-d"]
        assert "-e" not in call["argv"] and "TAG=1.2" not in call["argv"]
        assert call["env"]["TAG"] == "1.2"
        assert call["env"]["NETWORK_NAME"] == "staging"
    assert [Path(c["cwd"]).name for c in shim.calls()] == ["blog", "news"]


def test_dry_run_after_command_and_double_dash(root: Path, shim: Shim) -> None:
    r = run_kompose("--root", str(root), "blog", "up", "-d", "--dry-run", env=shim.env())
    assert r.code == 0
    assert shim.calls() == []
    assert "docker compose up -d" in r.err
    r = run_kompose("--root", str(root), "blog", "run", "--rm", "app", "--", "echo", "--dry-run",
                    "--", env=shim.env())
    assert r.code == 0, r.err
    assert compose_argv(shim) == [
        ["compose", "run", "--rm", "app", "echo", "--dry-run", "--"]]


def test_env_and_network_work_without_a_root_env(root: Path, shim: Shim) -> None:
    assert not (root / ".env").exists()
    r = run_kompose("--root", str(root), "--network=edge", "-e", "A=1", "-e", "A=2", "blog",
                    "config", env=shim.env())
    assert r.code == 0
    env = shim.calls()[0]["env"]
    assert (env["NETWORK_NAME"], env["A"]) == ("edge", "2")


def test_compose_program_can_be_replaced(root: Path, shim: Shim) -> None:
    r = run_kompose("--root", str(root), "blog", "ps",
                    env={**shim.env(), "KOMPOSE_COMPOSE_CMD": "docker compose --ansi never"})
    assert r.code == 0
    assert compose_argv(shim) == [["compose", "--ansi", "never", "ps"]]


def test_missing_compose_program_is_a_clear_failure(root: Path, shim: Shim) -> None:
    r = run_kompose("--root", str(root), "blog", "ps",
                    env={**shim.env(), "KOMPOSE_COMPOSE_CMD": "no-such-compose-binary"})
    assert r.code == 1
    assert "cannot run no-such-compose-binary: program not found" in r.err
    assert "Traceback" not in r.err


def test_list(root: Path) -> None:
    make_stacks(root, {".env": "DB_NAME=not-a-stack-db\n",
                       "blog": {".env": "DB_NAME=blogdb\n", "hooks.sh": "hook_pre_up() { :; }\n",
                                "blogdb_20250101_000000.sql": "x"}})
    r = run_kompose("--root", str(root), "--list")
    assert r.code == 0
    lines = r.out.splitlines()
    assert lines[0].split() == ["STACK", "COMPOSE", "FILE", ".ENV", "DUMPS", "DATABASE", "DB",
                                "VIA", "HOOKS"]
    # One precedence for everything: the root .env beats the stack's for the database name
    # too; a root DB_NAME alone still makes no stack a database stack (news).
    assert lines[1].split() == ["blog", "compose.yaml", "yes", "0", "not-a-stack-db", "host",
                                "pre_up"]
    assert lines[2].split() == ["news", "docker-compose.yml", "-", "-", "-", "-", "-"]
