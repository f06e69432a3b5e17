"""The hook runtime beyond kompose.sh: failure hooks and their context,
$KOMPOSE_ENV_FILE, time limits without orphans, Ctrl-C, root hooks, hooks:list/check."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import (
    COMPOSE,
    PROBE_GUARD_SH,
    Postgres,
    Shim,
    make_stacks,
    run_kompose,
)

LOG = r"""
log() {
  printf '%s|%s|%s|%s|%s|%s|%s\n' "$KOMPOSE_HOOK" "${KOMPOSE_STATUS:-}" \
    "${KOMPOSE_EXIT_CODE:-}" "${KOMPOSE_FAILED_STEP:-}" "${KOMPOSE_DURATION_MS:-}" \
    "${KOMPOSE_DUMP_FILE:-}" "$*" >>"$HOOK_LOG"
}
"""


def entries(log: Path) -> list[list[str]]:
    return [x.split("|") for x in log.read_text().splitlines()] if log.exists() else []


def alive_with(marker: str) -> list[int]:
    """Processes whose command line contains ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


# -- error/finally hooks and their context --------------------------------------------------
def test_db_error_and_finally_hooks_with_context(tmp_path: Path, pg: Postgres) -> None:
    name = pg.new_name()
    pg.create(name)
    hooks = LOG + "".join(f"hook_{p}_db_export() {{ log \"$@\"; }}\n"
                          for p in ("pre", "post", "error", "finally"))
    root = make_stacks(tmp_path / "r", {
        "good": {"compose.yaml": COMPOSE, ".env": pg.env_text(name), "hooks.sh": hooks},
        "bad": {"compose.yaml": COMPOSE, "hooks.sh": hooks,
                ".env": pg.env_text(name).replace(f"DB_NAME={name}", "DB_NAME=kt_missing_db")},
    })
    log = tmp_path / "log"
    r = run_kompose("--root", str(root), "*", "db:export", env={"HOOK_LOG": str(log)})
    assert r.code == 1
    rows = entries(log)
    assert [(e[0], e[1], e[2], e[3]) for e in rows] == [
        ("hook_pre_db_export", "", "", ""),
        ("hook_error_db_export", "failed", "1", "command"),
        ("hook_finally_db_export", "failed", "1", "command"),
        ("hook_pre_db_export", "", "", ""),
        ("hook_post_db_export", "success", "0", ""),
        ("hook_finally_db_export", "success", "0", ""),
    ]
    dump = next((root / "good").glob(f"{name}_*.sql"))
    assert rows[4][5] == str(dump) and rows[4][6] == str(dump)  # KOMPOSE_DUMP_FILE and $1
    assert rows[5][5] == str(dump)
    assert all(e[4].isdigit() for e in rows[1:3] + rows[4:])  # KOMPOSE_DURATION_MS


def test_env_file_from_pre_hook_reaches_command_and_later_hooks_only(tmp_path: Path,
                                                                     shim: Shim) -> None:
    root = make_stacks(tmp_path / "r", {
        "a": {"compose.yaml": COMPOSE, "hooks.sh": LOG + """
hook_pre_up() {
  printf 'DECRYPTED_TOKEN=s3cr3t-value\\nFROM_PRE="with space"\\n' >>"$KOMPOSE_ENV_FILE"
}
hook_post_up() { log "$DECRYPTED_TOKEN" "$FROM_PRE"; }
hook_finally_up() { log "$DECRYPTED_TOKEN"; }
"""},
        "b": {"compose.yaml": COMPOSE,
              "hooks.sh": LOG + 'hook_pre_up() { log "${FROM_PRE:-unset}"; }\n'},
    })
    log = tmp_path / "log"
    r = run_kompose("--root", str(root), "*", "up", env={**shim.env(), "HOOK_LOG": str(log)})
    assert r.code == 0, r.err
    calls = shim.calls()
    assert calls[0]["env"]["DECRYPTED_TOKEN"] == "s3cr3t-value"
    assert calls[0]["env"]["FROM_PRE"] == "with space"
    assert "DECRYPTED_TOKEN" not in calls[1]["env"]
    assert [e[6] for e in entries(log)] == ["s3cr3t-value with space", "s3cr3t-value", "unset"]
    assert "s3cr3t-value" not in r.err + r.out.replace("s3cr3t-value with space", "")


def test_env_files_of_a_killed_kompose_are_removed_by_the_next_one(tmp_path: Path,
                                                                   shim: Shim) -> None:
    """SIGKILL leaves kompose no chance to remove a stack run's env file, where a pre hook
    may have written a decrypted secret; the next kompose of the same user removes it, and
    leaves the files of a kompose still running alone."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    marker = tmp_path / "in-pre"
    root = make_stacks(tmp_path / "r", {"a": {"compose.yaml": COMPOSE, "hooks.sh": f"""
hook_pre_up() {{
  printf 'DECRYPTED_TOKEN=s3cr3t-value\\n' >>"$KOMPOSE_ENV_FILE"; : >{marker}; sleep 600
}}
"""}})
    env = {**shim.env(), "TMPDIR": str(tmpdir)}
    stuck = []
    for _ in range(2):  # one to kill, one that keeps running while the next starts
        marker.unlink(missing_ok=True)
        stuck.append(subprocess.Popen(
            [sys.executable, "-m", "kompose_py", "--root", str(root), "a", "up"], env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True))
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert stuck[-1].poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
    try:
        files = {p.pid: list(tmpdir.glob(f"kompose-env-{p.pid}-*.env")) for p in stuck}
        assert all(len(found) == 1 for found in files.values()), files
        assert "s3cr3t-value" in files[stuck[0].pid][0].read_text()
        os.killpg(stuck[0].pid, signal.SIGKILL)
        stuck[0].wait(timeout=30)
        assert files[stuck[0].pid][0].exists()  # killed: nothing could remove it
        other = tmpdir / "kompose-env-notes.env"  # not a name kompose gives: left alone
        other.write_text("x")
        r = run_kompose("--root", str(root), "a", "ps", env=env)
        assert r.code == 0, r.err
        assert not files[stuck[0].pid][0].exists()
        assert files[stuck[1].pid][0].exists()  # its kompose still runs
        assert other.exists()
        assert sorted(p.name for p in tmpdir.iterdir()) == sorted(
            [other.name, files[stuck[1].pid][0].name])  # and the new run left nothing
    finally:
        for proc in stuck:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


# -- time limits ----------------------------------------------------------------------------
@pytest.mark.parametrize("via", ["option", "env"])
def test_hook_timeout_kills_the_whole_group_and_the_run_goes_on(tmp_path: Path, shim: Shim,
                                                               via: str) -> None:
    marker = f"9{uuid.uuid4().int % 10**6:06d}"
    root = make_stacks(tmp_path / "r", {
        "a": {"compose.yaml": COMPOSE, "hooks.sh": LOG + f"""
hook_pre_up() {{ sleep 1{marker} & sleep 2{marker}; }}
hook_error_up() {{ log; }}
hook_finally_up() {{ log; }}
"""},
        "b": {"compose.yaml": COMPOSE},
    })
    log = tmp_path / "log"
    args = ["--hook-timeout", "1"] if via == "option" else []
    env = {**shim.env(), "HOOK_LOG": str(log)}
    if via == "env":
        env["KOMPOSE_HOOK_TIMEOUT"] = "1"
    r = run_kompose("--root", str(root), *args, "*", "up", env=env)  # a hang fails on time-out
    assert r.code == 1
    assert alive_with(marker) == []  # neither the hung sleep nor the background one
    assert "[HOOK] pre_up ✗ timed out" in r.err
    assert "✗ a timeout at pre" in r.err
    assert [e[:4] for e in entries(log)] == [["hook_error_up", "timeout", "143", "pre"],
                                             ["hook_finally_up", "timeout", "143", "pre"]]
    assert [Path(c["cwd"]).name for c in shim.calls()] == ["b"]  # the run went on


def test_hook_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path,
                                                                shim: Shim) -> None:
    marker = f"8{uuid.uuid4().int % 10**6:06d}"
    root = make_stacks(tmp_path / "r", {"a": {"compose.yaml": COMPOSE, "hooks.sh":
                       f"hook_pre_up() {{ trap '' TERM; sleep 3{marker}; sleep 4{marker}; }}\n"}})
    r = run_kompose("--root", str(root), "--hook-timeout", "0.5", "a", "up", env=shim.env())
    assert r.code == 1
    assert "timed out" in r.err
    assert alive_with(marker) == []
    assert shim.calls() == []


# -- Ctrl-C ---------------------------------------------------------------------------------
def start(root: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "kompose_py", "--root", str(root), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **env})


def wait_for(path: Path, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


@pytest.mark.parametrize("during", ["hook", "command"])
def test_ctrl_c_cancels_runs_error_and_finally_and_exits_130(tmp_path: Path, shim: Shim,
                                                             during: str) -> None:
    marker = f"7{uuid.uuid4().int % 10**6:06d}"
    started = tmp_path / "started"
    pre = f"touch {started}; sleep 5{marker}" if during == "hook" else ":"
    root = make_stacks(tmp_path / "r", {
        "a": {"compose.yaml": COMPOSE, "hooks.sh": LOG + f"""
hook_pre_up() {{ {pre}; }}
hook_post_up() {{ log; }}
hook_error_up() {{ log; }}
hook_finally_up() {{ log; }}
"""},
        "b": {"compose.yaml": COMPOSE, "hooks.sh": LOG + "hook_pre_up() { log; }\n"},
    })
    shim_bin = shim.bin / "docker"
    shim_bin.write_text(f"#!/bin/bash\n{PROBE_GUARD_SH}touch {started}\nexec sleep 6{marker}\n")
    log = tmp_path / "log"
    proc = start(root, {**shim.env(), "HOOK_LOG": str(log)}, "*", "up")
    wait_for(started)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert [e[:2] for e in entries(log)] == [["hook_error_up", "cancelled"],
                                             ["hook_finally_up", "cancelled"]]
    assert "✗ a cancelled" in err
    assert "⊘ b not run: interrupted" in err
    assert "Summary: 0 succeeded, 0 failed, 0 skipped, 1 cancelled, 1 not run out of 2" in err
    assert alive_with(marker) == []


def test_second_ctrl_c_ends_at_once(tmp_path: Path, shim: Shim) -> None:
    marker = f"6{uuid.uuid4().int % 10**6:06d}"
    started = tmp_path / "started"
    root = make_stacks(tmp_path / "r", {"a": {"compose.yaml": COMPOSE, "hooks.sh": f"""
hook_pre_up() {{ trap 'echo ignoring-int' INT; touch {started}; sleep 5{marker} & wait; wait; }}
"""}})
    proc = start(root, shim.env(), "a", "up")
    wait_for(started)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    assert proc.poll() is None  # the hook ignores the first one; kompose waits for it
    proc.send_signal(signal.SIGINT)
    # "At once": the hook would sleep for days and ignores SIGINT, so ending at all proves it.
    proc.communicate(timeout=10)
    assert proc.returncode == 130
    time.sleep(0.2)
    assert alive_with(marker) == []


def test_a_forwarded_signal_reaches_each_process_once(tmp_path: Path, shim: Shim) -> None:
    # The hook's shell leads its own group; its child left for a session of its own. Each
    # counts the SIGTERMs it gets: a signal sent twice (to the group and to the member) is two
    # Ctrl-Cs to a hook that ignores the first. Whether two sends arrive as one depends on
    # timing, so three rounds.
    for round_ in range(3):
        base = tmp_path / str(round_)
        started, release, counts = base / "started", base / "release", base / "counts"
        idle = f"while [ ! -e {release} ]; do sleep 0.05 & wait; done"
        root = make_stacks(base / "r", {"a": {"compose.yaml": COMPOSE, "hooks.sh": f"""
hook_pre_up() {{
  setsid bash -c 'trap "echo apart >>{counts}" TERM; touch {started}.apart; {idle}' &
  trap 'echo leader >>{counts}' TERM; touch {started}; {idle}; wait
}}
"""}})
        proc = start(root, shim.env(), "a", "up")
        wait_for(started)
        wait_for(Path(f"{started}.apart"))
        proc.send_signal(signal.SIGTERM)
        time.sleep(1)
        release.touch()
        proc.communicate(timeout=20)
        assert proc.returncode == 143
        assert sorted(counts.read_text().split()) == ["apart", "leader"], round_


# -- root hooks -----------------------------------------------------------------------------
def test_root_hooks_run_around_the_stack_hooks(tmp_path: Path, shim: Shim) -> None:
    def both(scope: str) -> str:
        def body(phase: str) -> str:
            return "return 3" if phase == "post" and scope == "stack" else ":"
        return LOG + "".join(f"hook_{p}_up() {{ log {scope}; {body(p)}; }}\n"
                             for p in ("pre", "post", "error", "finally"))
    root = make_stacks(tmp_path / "r", {"hooks.sh": both("root"),
                                        "a": {"compose.yaml": COMPOSE, "hooks.sh": both("stack")},
                                        "b": {"compose.yaml": COMPOSE}})
    log = tmp_path / "log"
    r = run_kompose("--root", str(root), "*", "up", env={**shim.env(), "HOOK_LOG": str(log)})
    assert r.code == 1
    got = [(e[0].removeprefix("hook_"), e[6]) for e in entries(log)]
    assert got == [
        ("pre_up", "root"), ("pre_up", "stack"),
        ("post_up", "stack"),  # fails: the root post hook does not run
        ("error_up", "stack"), ("error_up", "root"),
        ("finally_up", "stack"), ("finally_up", "root"),
        # stack b has no hooks of its own: the root hooks apply to it too
        ("pre_up", "root"), ("post_up", "root"), ("finally_up", "root"),
    ]


# -- hooks:list and hooks:check -------------------------------------------------------------
def test_hooks_list_and_check(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    root = make_stacks(tmp_path / "r", {
        "hooks.sh": f"touch {marker}\nhook_pre_up() {{ :; }}\n",
        "ok": {"compose.yaml": COMPOSE,
               "hooks.sh": f"touch {marker}\nhook_post_db_export() {{ :; }}\n"
                           "function hook_finally_pull { :; }\n"},
        "typos": {"compose.yaml": COMPOSE, "hooks.sh":
                  f"touch {marker}\nhook_pre_upp() {{ :; }}\n\nhook_post_db_exprot() {{ :; }}\n"
                  "hook_pre_up() { :; }\n"},
        "syntax": {"compose.yaml": COMPOSE, "hooks.sh":
                   f"touch {marker}\nhook_pre_up() {{\n  if true; then\n    echo x\n}}\n"},
        "loose": {"compose.yaml": COMPOSE, "hooks.sh": "hook_pre_ps() { :; }\n"},
    })
    os.chmod(root / "loose" / "hooks.sh", 0o666)
    os.chown(root / "ok" / "hooks.sh", 65534, 65534)
    r = run_kompose("--root", str(root), "ok,typos", "hooks:list")
    assert r.code == 0
    assert "hook_pre_up          up" in r.out and "hooks.sh:2 (root)" in r.out
    assert "hook_post_db_export  db:export" in r.out and "ok/hooks.sh:2" in r.out
    assert "hook_finally_pull" in r.out and "ok/hooks.sh:3" in r.out
    assert "typos/hooks.sh:4" in r.out

    r = run_kompose("--root", str(root), "*", "hooks:check")
    assert r.code == 1
    out = r.out
    assert "typos/hooks.sh:2: hook_pre_upp matches no known hook point; " \
           "did you mean hook_pre_up?" in out
    assert "typos/hooks.sh:4: hook_post_db_exprot matches no known hook point; " \
           "did you mean hook_post_db_export?" in out
    assert "error: syntax/hooks.sh:5: syntax error near unexpected token" in out
    assert "warning: loose/hooks.sh: writable by group and others (mode 666)" in out
    assert "warning: ok/hooks.sh: owned by uid 65534" in out
    assert "5 hooks files checked: 3 errors, 2 warnings" in out
    assert not marker.exists()  # neither command ran any hook code

    r = run_kompose("--root", str(root), "ok,loose", "hooks:check")
    assert r.code == 0  # warnings alone do not fail
