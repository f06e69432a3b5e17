"""Hardening (issue 11), end to end with a real kompose process, real bash, real signals and
the real engine: SIGTERM/SIGHUP, crashes that stay in their stack, the Compose subcommand
check, an unreachable engine, `up` without -d, and --json in every ending."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import COMPOSE, PROBE_GUARD_SH, Shim, make_stacks, run_kompose
from tests.test_hook_runtime import LOG, alive_with, entries, start, wait_for

DEAD = "unix:///nonexistent.sock"


# -- 1. SIGTERM and SIGHUP ------------------------------------------------------------------
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_termination_signal_cancels_like_ctrl_c(tmp_path: Path, shim: Shim, sig: int,
                                                code: int) -> None:
    marker = f"4{uuid.uuid4().int % 10**6:06d}"
    started = tmp_path / "started"
    root = make_stacks(tmp_path / "r", {
        "a": {"compose.yaml": COMPOSE, "hooks.sh": LOG + f"""
hook_pre_up() {{ touch {started}; sleep 5{marker} & sleep 6{marker}; }}
hook_post_up() {{ log; }}
hook_error_up() {{ log; }}
hook_finally_up() {{ log; }}
"""},
        "b": {"compose.yaml": COMPOSE, "hooks.sh": LOG + "hook_pre_up() { log; }\n"},
    })
    log = tmp_path / "log"
    proc = start(root, {**shim.env(), "HOOK_LOG": str(log)}, "--json", "*", "up", "-d")
    wait_for(started)
    time.sleep(0.2)  # let bash finish starting its children (as the Ctrl-C tests do)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert [e[:3] for e in entries(log)] == [["hook_error_up", "cancelled", str(code)],
                                             ["hook_finally_up", "cancelled", str(code)]]
    assert f"⊘ b not run: interrupted ({signal.Signals(sig).name})" in err
    assert "1 cancelled, 1 not run out of 2" in err
    doc = json.loads(out)
    assert doc["signal"] == signal.Signals(sig).name
    assert [s["status"] for s in doc["stacks"]] == ["cancelled", "not run"]
    assert alive_with(marker) == []  # the background sleep too
    assert shim.calls() == []


def test_sigterm_reaches_a_command_that_keeps_the_terminal(tmp_path: Path, shim: Shim) -> None:
    """`exec`, `run`, `logs -f` run in kompose's own process group on a terminal: a SIGTERM
    sent to kompose alone must still reach them."""
    import pty

    marker = f"2{uuid.uuid4().int % 10**6:06d}"
    started = tmp_path / "started"
    (shim.bin / "docker").write_text(
        f"#!/bin/bash\n{PROBE_GUARD_SH}touch {started}\nexec sleep 7{marker}\n")
    root = make_stacks(tmp_path / "r", {"a": {"compose.yaml": COMPOSE}})
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "kompose_py", "--root", str(root), "a",
                             "exec", "app", "sh"], stdin=follower, stdout=follower,
                            stderr=follower, env={**os.environ, **shim.env()})
    os.close(follower)
    try:
        wait_for(started)
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 143  # a hang here: the command never got it
    finally:
        proc.kill()
        os.close(leader)
    assert alive_with(marker) == []


def test_second_sigterm_kills_at_once_and_json_stays_valid(tmp_path: Path, shim: Shim) -> None:
    marker = f"3{uuid.uuid4().int % 10**6:06d}"
    started = tmp_path / "started"
    root = make_stacks(tmp_path / "r", {"a": {"compose.yaml": COMPOSE, "hooks.sh": f"""
hook_pre_up() {{ trap '' TERM HUP; touch {started}; sleep 5{marker}; }}
"""}})
    proc = start(root, shim.env(), "--json", "a", "up", "-d")
    wait_for(started)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert proc.poll() is None  # the hook ignores SIGTERM; kompose waits for it
    proc.send_signal(signal.SIGTERM)
    # "At once": the hook ignores SIGTERM and would sleep for days; ending at all proves it.
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 143
    doc = json.loads(out)
    assert doc["aborted"] is True and doc["signal"] == "SIGTERM"
    time.sleep(0.2)
    assert alive_with(marker) == []


# -- 2. crashes stay in their stack ---------------------------------------------------------
# A fault injected into the real kompose process: the compose step of stack "b" raises an
# exception nobody expects, with a secret of that stack in its message.
CRASHING_KOMPOSE = """
import sys
from kompose_py.runner import run as runner
from kompose_py.cli import main

real_run = runner.Runner.run

def run(self, cmd):
    if cmd.cwd.name == "b" and "compose" in cmd.argv:
        raise RuntimeError("disk vanished near " + cmd.env["API_TOKEN"])
    return real_run(self, cmd)

runner.Runner.run = run
sys.exit(main())
"""


def test_a_crash_in_one_stack_is_its_failure_and_the_run_goes_on(tmp_path: Path,
                                                                 shim: Shim) -> None:
    hooks = LOG + "hook_error_ps() { log; }\nhook_finally_ps() { log; }\n"
    root = make_stacks(tmp_path / "r", {
        "a": {"compose.yaml": COMPOSE},
        "b": {"compose.yaml": COMPOSE, ".env": "API_TOKEN=tok-99secret\n", "hooks.sh": hooks},
        "c": {"compose.yaml": COMPOSE},
    })
    log = tmp_path / "log"
    proc = subprocess.run([sys.executable, "-c", CRASHING_KOMPOSE, "--root", str(root), "--json",
                           "*", "ps"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **shim.env(), "HOOK_LOG": str(log)})
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "tok-99secret" not in proc.stderr + proc.stdout
    # b's error and finally hooks still ran, with the failure in their context
    assert [e[:4] for e in entries(log)] == [["hook_error_ps", "failed", "1", "command"],
                                             ["hook_finally_ps", "failed", "1", "command"]]
    assert "✗ b at command: internal error: disk vanished near ***" in proc.stderr
    assert "Summary: 2 succeeded, 1 failed, 0 skipped out of 3 stacks" in proc.stderr
    assert [Path(c["cwd"]).name for c in shim.calls()] == ["a", "c"]  # the run went on
    doc = json.loads(proc.stdout)
    assert doc["stacks"][1]["message"] == "internal error: disk vanished near ***"


def test_top_level_catch_all_is_one_line_unless_debugging(tmp_path: Path) -> None:
    root = make_stacks(tmp_path / "r", {"a": {"compose.yaml": COMPOSE}})
    env = {"KOMPOSE_COMPOSE_CMD": "docker 'compose"}  # shlex cannot split it
    r = run_kompose("--root", str(root), "a", "ps", env=env)
    assert r.code == 1
    assert r.err.splitlines() == ["kompose: error: internal error: No closing quotation",
                                  "kompose: hint: set KOMPOSE_DEBUG=1 for the traceback"]
    r = run_kompose("--root", str(root), "a", "ps", env={**env, "KOMPOSE_DEBUG": "1"})
    assert r.code == 1 and "Traceback" in r.err
    r = run_kompose("--root", str(root), "--json", "a", "ps", env=env)
    assert r.code == 1
    assert json.loads(r.out)["error"] == {
        "message": "internal error: No closing quotation",
        "hint": "set KOMPOSE_DEBUG=1 for the traceback", "exit_code": 1}


# -- 3. the Compose subcommand is checked before any stack runs -----------------------------
@pytest.mark.parametrize("dry", [False, True])
def test_unknown_subcommand_is_a_usage_error_before_anything_runs(
        tmp_path: Path, docker_engine: None, dry: bool) -> None:
    ran = tmp_path / "ran"
    root = make_stacks(tmp_path / "r", {n: {"compose.yaml": COMPOSE,
                                            "hooks.sh": f"hook_pre_upp() {{ touch {ran}; }}\n"}
                                        for n in ("a", "b")})
    r = run_kompose("--root", str(root), *(["-n"] if dry else []), "*", "upp")
    assert r.code == 2
    assert r.err.splitlines() == [
        "kompose: error: 'upp' is neither a docker compose command nor a kompose command",
        'kompose: hint: did you mean: kompose "*" up']
    assert not ran.exists()


def test_command_where_the_pattern_belongs(tmp_path: Path) -> None:
    root = make_stacks(tmp_path / "r", {"a": {"compose.yaml": COMPOSE}})
    r = run_kompose("--root", str(root), "up")
    assert r.code == 2 and 'hint: for every stack: kompose "*" up' in r.err
    r = run_kompose("--root", str(root), "up", "-d")
    assert r.code == 2 and 'hint: for every stack: kompose "*" up -d' in r.err


FAKE_COMPOSE = r"""#!/bin/bash
echo "$*" >>"$CALLS"
case "$*" in
  "version --short") echo 9.9.9 ;;
  --help) printf 'Usage: fake\n\nCommands:\n  up      Start\n  frobnicate  A plugin\n\n' ;;
  *) echo "ran $*" ;;
esac
"""


def test_subcommands_come_from_the_installed_compose_and_are_cached(tmp_path: Path) -> None:
    fake = tmp_path / "fake-compose"
    fake.write_text(FAKE_COMPOSE)
    fake.chmod(0o755)
    calls = tmp_path / "calls"
    root = make_stacks(tmp_path / "r", {n: {"compose.yaml": COMPOSE} for n in ("a", "b")})
    env = {"KOMPOSE_COMPOSE_CMD": str(fake), "CALLS": str(calls),
           "XDG_CACHE_HOME": str(tmp_path / "cache")}
    r = run_kompose("--root", str(root), "*", "frobnicate", env=env)  # a plugin's command
    assert r.code == 0, r.err
    assert calls.read_text().splitlines() == ["version --short", "--help", "frobnicate",
                                              "frobnicate"]
    calls.unlink()
    r = run_kompose("--root", str(root), "*", "frobnicat", env=env)
    assert r.code == 2 and 'did you mean: kompose "*" frobnicate' in r.err
    r = run_kompose("--root", str(root), "*", "up", env=env)
    assert r.code == 0
    assert calls.read_text().splitlines() == ["up", "up"]  # warm cache: no probe at all


# -- 4. an unreachable engine is said once ---------------------------------------------------
def test_unreachable_engine_is_one_line_and_its_stacks_are_not_run(tmp_path: Path,
                                                                   shim: Shim) -> None:
    ran = tmp_path / "ran"
    hooks = f"hook_pre_ps() {{ touch {ran}; }}\n"
    root = make_stacks(tmp_path / "r", {
        "a": {"compose.yaml": COMPOSE, ".env": f"DOCKER_HOST={DEAD}\n", "hooks.sh": hooks},
        "b": {"compose.yaml": COMPOSE, ".env": f"DOCKER_HOST={DEAD}\n", "hooks.sh": hooks},
        "c": {"compose.yaml": COMPOSE, ".env": f"DOCKER_HOST=unix://{tmp_path}/up.sock\n"},
    })
    with socket.socket(socket.AF_UNIX) as engine:  # stands for c's engine: it answers
        engine.bind(str(tmp_path / "up.sock"))
        engine.listen()
        # The shell's DOCKER_HOST would beat the stacks' .env: leave it unset here.
        env = {k: v for k, v in shim.env().items() if k != "DOCKER_HOST"}
        r = run_kompose("--root", str(root), "--json", "*", "ps", env=env)
    assert r.code == 1
    said = [x for x in r.err.splitlines() if "cannot reach" in x]
    assert said == [f"kompose: error: cannot reach the Docker engine at {DEAD} (DOCKER_HOST): "
                    "No such file or directory; not running a, b"]
    assert "⊘ a not run: Docker engine unreachable" in r.err
    assert not ran.exists()
    assert [Path(c["cwd"]).name for c in shim.calls()] == ["c"]
    doc = json.loads(r.out)
    assert [s["status"] for s in doc["stacks"]] == ["not run", "not run", "success"]


def test_summary_says_why_a_stack_failed(tmp_path: Path, docker_engine: None) -> None:
    root = make_stacks(tmp_path / "r", {"a": {"compose.yaml": COMPOSE}})
    r = run_kompose("--root", str(root), "a", "run", "--rm", "no-such-service")
    assert r.code == 1
    summary = r.err[r.err.index("Summary"):]
    assert "✗ a at command: exit 1: no such service: no-such-service" in summary


# -- 5. up without -d over several stacks ----------------------------------------------------
def test_up_without_detach_over_several_stacks_warns_once(tmp_path: Path, shim: Shim) -> None:
    root = make_stacks(tmp_path / "r", {n: {"compose.yaml": COMPOSE} for n in ("a", "b", "c")})
    r = run_kompose("--root", str(root), "*", "up", env=shim.env())
    assert r.code == 0
    assert r.err.count("kompose: warning: `up` without -d attaches to the first stack") == 1
    assert "use `up -d`, or `-j N`" in r.err
    for args in (["*", "up", "-d"], ["-j", "3", "*", "up"], ["a", "up"]):
        assert "warning" not in run_kompose("--root", str(root), *args, env=shim.env()).err


# -- 7. --json in every ending ---------------------------------------------------------------
@pytest.mark.parametrize(("args", "code"), [
    (["--json", "--bogus", "a", "ps"], 2), (["--json", "a", "db:exprot"], 2),
    (["--json", "nomatch", "ps"], 3), (["--json", "-e", "X", "a", "ps"], 2),
])
def test_json_document_for_errors_before_the_run(tmp_path: Path, args: list[str],
                                                 code: int) -> None:
    root = make_stacks(tmp_path / "r", {"a": {"compose.yaml": COMPOSE}})
    r = run_kompose("--root", str(root), *args)
    assert r.code == code
    doc = json.loads(r.out)
    assert doc["error"]["exit_code"] == code and doc["error"]["message"]
    assert doc["stacks"] == []


def test_json_reader_that_goes_away(tmp_path: Path, shim: Shim) -> None:
    root = make_stacks(tmp_path / "r", {"a": {"compose.yaml": COMPOSE},
                                        "b": {"compose.yaml": COMPOSE, ".env": "SHIM_EXIT=3\n"}})
    read, write = os.pipe()
    os.close(read)  # the reader is gone before kompose writes its document
    proc = subprocess.run([sys.executable, "-m", "kompose_py", "--root", str(root), "--json",
                           "*", "ps"], stdout=write, stderr=subprocess.PIPE, text=True,
                          env={**os.environ, **shim.env()}, timeout=60)
    os.close(write)
    assert proc.returncode == 1  # the run's own status: b failed
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr
    assert "Summary: 1 succeeded, 1 failed" in proc.stderr


# -- issue 12.9: hook children that leave the process group ---------------------------------
ESCAPING_HOOK = """
hook_pre_up() {{
  touch {started}
  setsid sleep 1{m} &                # a session of its own, child of the hook
  ( set -m; setsid sleep 2{m} & )    # setsid forks: its parent is gone at once
  set -m; sleep 3{m} & set +m        # a process group of its own, same session
  sleep 4{m}
}}
hook_finally_up() {{ log; }}
"""


def _reap(marker: str) -> list[int]:
    """The processes left with ``marker``, killed so that a failing test leaves nothing."""
    left = alive_with(marker)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left


def test_hook_children_that_leave_the_group_end_with_a_time_out(tmp_path: Path,
                                                                shim: Shim) -> None:
    marker = f"5{uuid.uuid4().int % 10**6:06d}"
    root = make_stacks(tmp_path / "r", {"a": {"compose.yaml": COMPOSE, "hooks.sh": LOG +
                                              ESCAPING_HOOK.format(started=tmp_path / "s",
                                                                   m=marker)}})
    log = tmp_path / "log"
    try:
        r = run_kompose("--root", str(root), "--hook-timeout", "1", "a", "up", "-d",
                        env={**shim.env(), "HOOK_LOG": str(log)}, timeout=60)
    finally:
        left = _reap(marker)  # nothing may outlive the test, whatever fails
    assert left == []
    assert r.code == 1 and "pre_up ✗ timed out" in r.err, r.err
    assert [e[:2] for e in entries(log)] == [["hook_finally_up", "timeout"]]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_hook_children_that_leave_the_group_end_with_a_termination(tmp_path: Path, shim: Shim,
                                                                   sig: int) -> None:
    marker = f"6{uuid.uuid4().int % 10**6:06d}"
    started = tmp_path / "s"
    root = make_stacks(tmp_path / "r", {"a": {"compose.yaml": COMPOSE, "hooks.sh": LOG +
                                              ESCAPING_HOOK.format(started=started, m=marker)}})
    log = tmp_path / "log"
    proc = start(root, {**shim.env(), "HOOK_LOG": str(log)}, "a", "up", "-d")
    try:
        wait_for(started)
        # The three escapers are running before the signal comes.
        deadline = time.monotonic() + 20
        while len(alive_with(marker)) < 4:
            assert time.monotonic() < deadline, alive_with(marker)
            time.sleep(0.02)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        left = _reap(marker)  # nothing may outlive the test, whatever fails
    assert left == []
    assert proc.returncode == 128 + sig, err
    assert [e[:2] for e in entries(log)] == [["hook_finally_up", "cancelled"]]


# -- issue 12.10: a reader that goes away ----------------------------------------------------
@pytest.mark.parametrize(("parallel", "first_fails", "stream"), [
    ("1", False, "stdout"), ("2", False, "stdout"), ("2", True, "stdout"),
    ("2", False, "both"),
])
def test_a_reader_that_goes_away_ends_the_run(tmp_path: Path, shim: Shim, parallel: str,
                                              first_fails: bool, stream: str) -> None:
    """`kompose -j N "*" ps | head -1`: kompose stops (no new stack, running ones asked to
    stop, error and finally hooks still run), 141 as any producer in a pipeline, or 1 when a
    stack had failed. Without this the relay thread died with a traceback and the child hung
    on a full pipe."""
    done = tmp_path / "a-failed"
    talker = LOG + f"""
hook_pre_ps() {{ while [ ! -e {done} ]; do sleep 0.02; done; yes "line of $stack"; }}
hook_finally_ps() {{ log "$stack"; }}
"""
    a_hooks = LOG + (f"hook_pre_ps() {{ exit 3; }}\nhook_error_ps() {{ touch {done}; }}\n"
                     if first_fails else f"hook_pre_ps() {{ touch {done}; yes 'line of a'; }}\n")
    root = make_stacks(tmp_path / "r", {
        "a": {"compose.yaml": COMPOSE,
              "hooks.sh": a_hooks + 'hook_finally_ps() { log "$stack"; }\n'},
        **{n: {"compose.yaml": COMPOSE, "hooks.sh": talker} for n in ("b", "c", "d")}})
    log = tmp_path / "log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "kompose_py", "--root", str(root), "-j", parallel, "*", "ps"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if stream == "both" else subprocess.PIPE,
        env={**os.environ, **shim.env(), "HOOK_LOG": str(log)})
    assert proc.stdout is not None
    try:
        line = b"-"
        while line and b"line of" not in line:
            line = proc.stdout.readline()
        assert line, "kompose ended before any output"
        proc.stdout.close()  # the reader goes away
        proc.stdout = None
        # A hang here: a child blocked on a pipe nobody reads.
        _, raw = proc.communicate(timeout=60)
        err = (raw or b"").decode()
        code = proc.returncode
    finally:
        proc.kill()
    assert code == (1 if first_fails else 141), err
    assert "Traceback" not in err and "Exception" not in err
    if stream == "stdout":
        assert "kompose: output closed (its reader went away)" in err
        assert "⊘ d not run: output closed (its reader went away)" in err
    finished = {e[6] for e in entries(log)}  # the started stacks' finally hooks ran
    assert "a" in finished and "d" not in finished  # d never started
    assert shim.calls() == []


def test_env_file_for_hooks_is_private(tmp_path: Path, shim: Shim) -> None:
    """$KOMPOSE_ENV_FILE may receive decrypted secrets: created mode 0600 (issue 11.6), and
    gone after the stack."""
    seen = tmp_path / "seen"
    root = make_stacks(tmp_path / "r", {"a": {"compose.yaml": COMPOSE, "hooks.sh":
        f'hook_pre_ps() {{ stat -c "%a %s $KOMPOSE_ENV_FILE" "$KOMPOSE_ENV_FILE" >{seen}; }}\n'}})
    r = run_kompose("--root", str(root), "a", "ps", env={**shim.env(), "UMASK_PROBE": "1"})
    assert r.code == 0, r.err
    mode, size, name = seen.read_text().split()
    assert (mode, size) == ("600", "0")
    assert not Path(name).exists()
