"""Hooks around compose commands, with real bash and a recording docker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import COMPOSE, Shim, make_stacks, run_kompose

# Every hook appends a JSON line: which function, its argv, cwd, and the variables it sees.
RECORDER = r'''
record() {
  python3 - "$KOMPOSE_HOOK" "$@" <<'PY'
import json, os, sys
keys = ["SCRIPT_DIR", "stack", "KOMPOSE_ROOT", "KOMPOSE_STACK", "KOMPOSE_STACK_DIR",
        "KOMPOSE_COMMAND", "KOMPOSE_HOOK", "KOMPOSE_DRY_RUN", "KOMPOSE_STATUS",
        "KOMPOSE_EXIT_CODE", "KOMPOSE_FAILED_STEP", "ONLY_A", "SHARED", "LEAK"]
entry = {"hook": sys.argv[1], "args": sys.argv[2:], "cwd": os.getcwd(),
         "env": {k: os.environ.get(k) for k in keys}}
with open(os.environ["HOOK_LOG"], "a") as f:
    f.write(json.dumps(entry) + "\n")
PY
}
'''


def hooks_file(*functions: str, body: str = "record \"$@\"") -> str:
    return RECORDER + "".join(f"{f}() {{ {body}; }}\n" for f in functions)


def read_log(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "hooks.log"


def run(root: Path, shim: Shim, log: Path, *args: str, env: dict[str, str] | None = None):
    return run_kompose("--root", str(root), *args,
                       env={**shim.env(), "HOOK_LOG": str(log), **(env or {})})


def test_arguments_cwd_and_environment(tmp_path: Path, shim: Shim, log: Path) -> None:
    root = make_stacks(tmp_path / "r", {
        ".env": "SHARED=root\n",
        "a": {"compose.yaml": COMPOSE, ".env": "ONLY_A=secret-of-a\n",
              "hooks.sh": hooks_file("hook_pre_up", "hook_post_up")},
        "b": {"compose.yaml": COMPOSE, "hooks.sh": hooks_file("hook_pre_up", "hook_post_up")},
    })
    r = run(root, shim, log, "*", "up", "-d", "--build", "it's a \"quoted\" arg", "$HOME",
            "--no-color")
    assert r.code == 0, r.err
    entries = read_log(log)
    assert [(e["hook"], Path(e["cwd"]).name) for e in entries] == [
        ("hook_pre_up", "a"), ("hook_post_up", "a"), ("hook_pre_up", "b"), ("hook_post_up", "b")]
    expected_args = ["up", "-d", "--build", "it's a \"quoted\" arg", "$HOME", "--no-color"]
    for e in entries:
        assert e["args"] == expected_args
        stack = Path(e["cwd"]).name
        assert e["env"]["SCRIPT_DIR"] == e["env"]["KOMPOSE_ROOT"] == str(root)
        assert e["env"]["stack"] == e["env"]["KOMPOSE_STACK"] == stack
        assert e["env"]["KOMPOSE_STACK_DIR"] == str(root / stack)
        assert e["env"]["KOMPOSE_COMMAND"] == "up"
        assert e["env"]["KOMPOSE_DRY_RUN"] == "0"
        assert e["env"]["SHARED"] == "root"
        # Nothing of stack a reaches stack b: not its .env, not its hooks.
        assert e["env"]["ONLY_A"] == ("secret-of-a" if stack == "a" else None)
    post_a = entries[1]
    assert post_a["env"]["KOMPOSE_STATUS"] == "success"
    assert post_a["env"]["KOMPOSE_EXIT_CODE"] == "0"
    calls = shim.calls()
    assert [c["argv"][1:] for c in calls] == [expected_args, expected_args]
    assert calls[0]["env"].get("ONLY_A") == "secret-of-a"
    assert "ONLY_A" not in calls[1]["env"]
    assert "stack" not in calls[0]["env"]  # hook-only variables stay with hooks


def test_each_hook_call_is_a_fresh_bash(tmp_path: Path, shim: Shim, log: Path) -> None:
    root = make_stacks(tmp_path / "r", {
        "a": {"compose.yaml": COMPOSE, "hooks.sh": RECORDER + """
LOADS=$((${LOADS:-0} + 1))
hook_pre_ps() { export LEAK=from-pre; helper_defined_in_pre() { :; }; record "$LOADS"; }
hook_post_ps() { record "$LOADS" "${LEAK:-unset}" "$(type -t helper_defined_in_pre || echo none)"; }
"""},
        "b": {"compose.yaml": COMPOSE, "hooks.sh": hooks_file("hook_pre_ps")},
    })
    r = run(root, shim, log, "*", "ps")
    assert r.code == 0, r.err
    entries = read_log(log)
    assert entries[0]["args"] == ["1"]
    assert entries[1]["args"] == ["1", "unset", "none"]
    assert entries[2]["env"]["LEAK"] is None
    assert "LEAK" not in shim.calls()[0]["env"]


def test_hook_exit_cannot_end_kompose(tmp_path: Path, shim: Shim, log: Path) -> None:
    root = make_stacks(tmp_path / "r", {
        "a": {"compose.yaml": COMPOSE, "hooks.sh": "hook_post_ps() { exit 0; }\n"},
        "b": {"compose.yaml": COMPOSE},
    })
    r = run(root, shim, log, "*", "ps")
    assert r.code == 0
    assert len(shim.calls()) == 2
    assert "2 succeeded" in r.err


@pytest.mark.parametrize(("failing", "ran", "failed_step"), [
    ("hook_pre_up", ["hook_pre_up", "hook_error_up", "hook_finally_up"], "pre"),
    ("compose", ["hook_pre_up", "hook_error_up", "hook_finally_up"], "command"),
    ("hook_post_up", ["hook_pre_up", "hook_post_up", "hook_error_up", "hook_finally_up"], "post"),
    (None, ["hook_pre_up", "hook_post_up", "hook_finally_up"], ""),
])
def test_failure_semantics(tmp_path: Path, shim: Shim, log: Path, failing: str | None,
                           ran: list[str], failed_step: str) -> None:
    fns = ["hook_pre_up", "hook_post_up", "hook_error_up", "hook_finally_up"]
    text = RECORDER + "".join(
        f"{f}() {{ record \"$@\"; {'return 7' if f == failing else 'return 0'}; }}\n" for f in fns)
    stack_env = "SHIM_EXIT=5\n" if failing == "compose" else ""
    root = make_stacks(tmp_path / "r", {
        "a": {"compose.yaml": COMPOSE, "hooks.sh": text, ".env": stack_env},
        "b": {"compose.yaml": COMPOSE},
    })
    r = run(root, shim, log, "*", "up", "-d")
    entries = read_log(log)
    assert [e["hook"] for e in entries] == ran
    compose_ran_for_a = any(Path(c["cwd"]).name == "a" for c in shim.calls())
    assert compose_ran_for_a == (failing != "hook_pre_up")
    # The failing stack never stops the others.
    assert any(Path(c["cwd"]).name == "b" for c in shim.calls())
    if failing is None:
        assert r.code == 0
        assert "Summary: 2 succeeded, 0 failed, 0 skipped out of 2 stacks" in r.err
        return
    assert r.code == 1
    assert "Summary: 1 succeeded, 1 failed, 0 skipped out of 2 stacks" in r.err
    final = entries[-1]["env"]
    assert final["KOMPOSE_STATUS"] == "failed"
    assert final["KOMPOSE_FAILED_STEP"] == failed_step
    assert final["KOMPOSE_EXIT_CODE"] == ("5" if failing == "compose" else "7")
    assert f"✗ a failed at {failed_step}" in r.err


def test_undefined_hooks_are_not_run_and_files_are_not_sourced(tmp_path: Path, shim: Shim,
                                                               log: Path) -> None:
    marker = tmp_path / "sourced"
    root = make_stacks(tmp_path / "r", {
        "a": {"compose.yaml": COMPOSE,
              "hooks.sh": f"touch {marker}\nhook_pre_up() {{ :; }}\n# hook_pre_ps() {{ :; }}\n"},
    })
    assert run(root, shim, log, "a", "ps").code == 0
    assert run(root, shim, log, "--list").code == 0
    assert run(root, shim, log, "-n", "a", "up").code == 0
    assert not marker.exists()
    assert run(root, shim, log, "a", "up").code == 0
    assert marker.exists()


def test_unsourceable_hooks_file_fails_the_hook_point(tmp_path: Path, shim: Shim,
                                                      log: Path) -> None:
    root = make_stacks(tmp_path / "r", {
        "syntax": {"compose.yaml": COMPOSE, "hooks.sh": "hook_pre_up() { echo x\n"},
        "toplevel": {"compose.yaml": COMPOSE,
                     "hooks.sh": "false\nhook_pre_up() { :; }\n"},
        "fine": {"compose.yaml": COMPOSE, "hooks.sh": "hook_pre_up() { :; }\n"},
        # `exit 0` at the top ends sourcing early: the hook never ran, so it is no success.
        "exits": {"compose.yaml": COMPOSE, "hooks.sh": "exit 0\nhook_pre_up() { :; }\n"},
    })
    r = run(root, shim, log, "*", "up", "-d")
    assert r.code == 1
    assert [Path(c["cwd"]).name for c in shim.calls()] == ["fine"]
    assert "syntax error" in r.err  # bash's own message
    assert "sourcing" in r.err and "toplevel/hooks.sh failed" in r.err
    assert "exits/hooks.sh failed" in r.err
    assert "1 succeeded, 3 failed" in r.err


def test_secrets_are_masked_in_every_line(tmp_path: Path, shim: Shim, log: Path) -> None:
    root = make_stacks(tmp_path / "r", {
        ".env": "DB_PASSWORD=hunter2-root\n",
        "a": {"compose.yaml": COMPOSE, ".env": "API_TOKEN=tok-123456\n",
              "hooks.sh": "hook_pre_up() { return 3; }\n"},
    })
    for extra in ([], ["-n"]):
        r = run(root, shim, log, *extra, "-e", "MY_SECRET=s3cr3t-cli", "a", "up",
                "--password=hunter2-root", "tok-123456", "MY_SECRET=s3cr3t-cli")
        for secret in ("hunter2-root", "tok-123456", "s3cr3t-cli"):
            assert secret not in r.out + r.err
        assert "MY_SECRET=***" in r.err
        assert "--password=***" in r.err


def test_output_marks_and_summary(tmp_path: Path, shim: Shim, log: Path) -> None:
    root = make_stacks(tmp_path / "r", {
        "a": {"compose.yaml": COMPOSE, "hooks.sh": "hook_pre_ps() { echo from-hook; }\n"},
        "b": {"compose.yaml": COMPOSE, ".env": "SHIM_EXIT=4\n"},
    })
    r = run(root, shim, log, "*", "ps")
    assert r.code == 1
    err = r.err
    assert "▶ a" in err and "▶ b" in err
    assert "[HOOK] pre_ps ✓" in err
    assert "$ docker compose ps" in err
    assert "compose ps ✗ exit 4" in err
    assert "✗ b failed at command (exit 4" in err
    assert "\x1b[" not in err  # not a terminal: plain text
    rule = "━" * 51
    lines = err.splitlines()
    i = lines.index(rule)
    assert lines[i + 1].startswith("Summary: 1 succeeded, 1 failed, 0 skipped out of 2 stacks (")
    assert lines[-1] == rule
    # Command and hook output keep their own stream (stdout); kompose's lines go to stderr.
    assert "from-hook" in r.out and "shim ran compose" in r.out
    assert "Summary" not in r.out


def test_quiet_and_verbose(tmp_path: Path, shim: Shim, log: Path) -> None:
    root = make_stacks(tmp_path / "r", {
        "a": {"compose.yaml": COMPOSE, ".env": "X=1\n", "hooks.sh": "hook_pre_ps() { :; }\n"},
        "b": {"compose.yaml": COMPOSE, ".env": "SHIM_EXIT=4\n"},
    })
    r = run(root, shim, log, "-q", "*", "ps")
    assert r.code == 1
    # Only the failure and the summary: no headers, hook or command lines, no successes.
    assert "▶" not in r.err and "[HOOK]" not in r.err and "$ docker" not in r.err
    assert "✓ a" not in r.err
    assert "compose ps ✗ exit 4" in r.err and "✗ b failed at command" in r.err
    assert "Summary: 1 succeeded, 1 failed, 0 skipped out of 2 stacks" in r.err
    quiet_lines = len(r.err.splitlines())
    r = run(root, shim, log, "-v", "*", "ps")
    assert "env files: a/.env" in r.err and "env files: b/.env" in r.err
    assert len(r.err.splitlines()) > quiet_lines
    r = run(root, shim, log, "*", "ps")
    assert "env files:" not in r.err  # only -v (or a dry-run) shows them in a real run
