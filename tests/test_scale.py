"""Parallel stacks, fail-fast and the JSON report."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from tests.conftest import COMPOSE, PROBE_GUARD_PY, Shim, make_stacks, run_kompose
from tests.test_hook_runtime import alive_with, wait_for

# A docker that prints many long lines fast, on both streams, and notes when it ran.
CHATTY = r'''#!/usr/bin/env python3
''' + PROBE_GUARD_PY + r'''
import os, sys, time
name = os.path.basename(os.getcwd())
with open(os.environ["SPAN_LOG"], "a") as log:
    log.write(f"{name} start {time.monotonic()}\n")
for i in range(400):
    stream = sys.stdout if i % 3 else sys.stderr
    stream.write(f"{name}:{i}:" + name[0] * 300 + "\n")
    stream.flush()
time.sleep(float(os.environ.get("SHIM_SLEEP", "0.5")))
with open(os.environ["SPAN_LOG"], "a") as log:
    log.write(f"{name} end {time.monotonic()}\n")
sys.exit(int(os.environ.get("SHIM_EXIT", "0")))
'''


def chatty(shim: Shim, tmp_path: Path) -> dict[str, str]:
    (shim.bin / "docker").write_text(CHATTY)
    return {**shim.env(), "SPAN_LOG": str(tmp_path / "spans")}


def spans(tmp_path: Path) -> dict[str, tuple[float, float]]:
    found: dict[str, list[float]] = {}
    for line in (tmp_path / "spans").read_text().splitlines():
        name, _, when = line.split()
        found.setdefault(name, []).append(float(when))
    return {k: (v[0], v[1]) for k, v in found.items()}


def test_parallel_lines_are_whole_and_prefixed(tmp_path: Path, shim: Shim) -> None:
    names = ["alpha", "bravo", "charlie", "delta"]
    hooks = ("hook_pre_up() { for i in $(seq 50); do "
             "echo \"hook-$stack-$i-$(printf 'h%.0s' {1..200})\"; done; }\n")
    root = make_stacks(tmp_path / "r", {n: {"compose.yaml": COMPOSE, "hooks.sh": hooks}
                                        for n in names})
    r = run_kompose("--root", str(root), "-j", "4", "*", "up", env=chatty(shim, tmp_path))
    assert r.code == 0, r.err[-2000:]
    line_re = re.compile(r"^(alpha|bravo|charlie|delta)\s* \| (.*)$")
    seen: dict[str, set[int]] = {n: set() for n in names}
    for stream in (r.out, r.err):
        for line in stream.splitlines():
            if line.startswith(("━", "Summary")):
                continue
            m = line_re.match(line)
            assert m, f"unprefixed or broken line: {line[:120]!r}"
            name, body = m[1], m[2]
            if body.startswith(f"{name}:"):  # a compose line: exactly what the child wrote
                _, i, text = body.split(":", 2)
                assert text == name[0] * 300
                seen[name].add(int(i))
            elif body.startswith("hook-"):
                assert body.startswith(f"hook-{name}-") and body.endswith("h" * 200)
    assert seen == {n: set(range(400)) for n in names}  # every line, once, whole
    assert "Summary: 4 succeeded, 0 failed, 0 skipped out of 4 stacks" in r.err
    # They really ran at the same time: every span overlaps every other.
    s = spans(tmp_path)
    assert max(a for a, _ in s.values()) < min(b for _, b in s.values())


def test_parallel_keeps_each_stacks_own_order_and_at_most_n_at_once(tmp_path: Path,
                                                                    shim: Shim) -> None:
    names = [f"s{i}" for i in range(6)]
    hooks = r"""
hook_pre_up() { echo "pre $stack" >>"$ORDER_LOG"; }
hook_post_up() { echo "post $stack" >>"$ORDER_LOG"; }
hook_finally_up() { echo "finally $stack" >>"$ORDER_LOG"; }
"""
    root = make_stacks(tmp_path / "r", {n: {"compose.yaml": COMPOSE, "hooks.sh": hooks}
                                        for n in names})
    env = {**chatty(shim, tmp_path), "ORDER_LOG": str(tmp_path / "order"), "SHIM_SLEEP": "0.3"}
    r = run_kompose("--root", str(root), "--parallel", "2", "*", "up", env=env)
    assert r.code == 0, r.err[-1000:]
    order = (tmp_path / "order").read_text().splitlines()
    for n in names:
        mine = [x.split()[0] for x in order if x.endswith(f" {n}")]
        assert mine == ["pre", "post", "finally"]
    s = spans(tmp_path)
    events = sorted([(a, 1) for a, _ in s.values()] + [(b, -1) for _, b in s.values()])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    assert peak == 2


def test_fail_fast(tmp_path: Path, shim: Shim) -> None:
    root = make_stacks(tmp_path / "r", {
        "a": {"compose.yaml": COMPOSE},
        "b": {"compose.yaml": COMPOSE, ".env": "SHIM_EXIT=3\n"},
        "c": {"compose.yaml": COMPOSE},
        "d": {"compose.yaml": COMPOSE},
    })
    r = run_kompose("--root", str(root), "--fail-fast", "*", "ps", env=shim.env())
    assert r.code == 1
    assert [Path(c["cwd"]).name for c in shim.calls()] == ["a", "b"]
    assert "⊘ c not run: --fail-fast after b failed" in r.err
    assert "Summary: 1 succeeded, 1 failed, 0 skipped, 2 not run out of 4 stacks" in r.err
    # In parallel the ones already running finish; none starts after the failure.
    (root / "a" / ".env").write_text("SHIM_SLEEP=1.5\n")
    (root / "b" / ".env").write_text("SHIM_EXIT=3\nSHIM_SLEEP=0\n")
    r = run_kompose("--root", str(root), "-j", "2", "--fail-fast", "*", "up",
                    env=chatty(shim, tmp_path))
    assert r.code == 1
    assert set(spans(tmp_path)) == {"a", "b"}
    assert re.search(r"✓ a \d", r.err.replace("a | ", ""))
    assert "Summary: 1 succeeded, 1 failed, 0 skipped, 2 not run out of 4 stacks" in r.err


def test_ctrl_c_and_timeouts_with_several_stacks_running(tmp_path: Path, shim: Shim) -> None:
    marker = f"5{uuid.uuid4().int % 10**6:06d}"
    hooks = f"""
hook_pre_up() {{ touch "$KOMPOSE_STACK_DIR/started"; sleep 4{marker}; }}
hook_finally_up() {{ echo "finally $stack $KOMPOSE_STATUS" >>"$ORDER_LOG"; }}
"""
    root = make_stacks(tmp_path / "r", {n: {"compose.yaml": COMPOSE, "hooks.sh": hooks}
                                        for n in ("a", "b", "c")})
    env = {**os.environ, **shim.env(), "ORDER_LOG": str(tmp_path / "order")}
    proc = subprocess.Popen([sys.executable, "-m", "kompose_py", "--root", str(root), "-j", "2",
                             "*", "up"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    wait_for(root / "a" / "started")
    wait_for(root / "b" / "started")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert sorted((tmp_path / "order").read_text().splitlines()) == [
        "finally a cancelled", "finally b cancelled"]
    assert "c not run: interrupted" in err
    assert alive_with(marker) == []
    # A hook time-out in one stack does not disturb the others.
    (tmp_path / "order").unlink()
    (root / "c" / "hooks.sh").write_text(hooks.replace(f"sleep 4{marker}", "true"))
    r = run_kompose("--root", str(root), "-j", "3", "--hook-timeout", "1", "*", "up",
                    env={**shim.env(), "ORDER_LOG": str(tmp_path / "order")})
    assert r.code == 1
    assert sorted((tmp_path / "order").read_text().splitlines()) == [
        "finally a timeout", "finally b timeout", "finally c success"]
    assert alive_with(marker) == []


def test_json_report(tmp_path: Path, shim: Shim) -> None:
    root = make_stacks(tmp_path / "r", {
        "good": {"compose.yaml": COMPOSE, "hooks.sh": "hook_pre_ps() { echo hook-output; }\n"},
        "bad": {"compose.yaml": COMPOSE,
                ".env": "API_TOKEN=tok-abcdef12\nKOMPOSE_COMPOSE_CMD=/nowhere/tok-abcdef12\n"},
        "fails": {"compose.yaml": COMPOSE, ".env": "SHIM_EXIT=2\n"},
    })
    r = run_kompose("--root", str(root), "--json", "*", "ps", env=shim.env())
    assert r.code == 1
    doc = json.loads(r.out)  # stdout is the document alone
    assert "hook-output" in r.err and "shim ran" in r.err  # children's output went to stderr
    assert "Summary:" in r.err
    assert doc["schema"] == 1 and doc["command"] == "ps" and doc["dry_run"] is False
    assert doc["summary"] == {"failed": 2, "success": 1}
    stacks = {s["stack"]: s for s in doc["stacks"]}
    assert list(stacks) == ["bad", "fails", "good"]
    good = stacks["good"]
    assert (good["status"], good["exit_code"], good["failed_step"]) == ("success", 0, None)
    assert [(s["name"], s["kind"], s["status"], s["exit_code"]) for s in good["steps"]] == [
        ("pre_ps", "hook", "success", 0), ("compose ps", "command", "success", 0)]
    assert all(isinstance(s["duration_ms"], int) for s in good["steps"])
    assert stacks["fails"]["exit_code"] == 2 and stacks["fails"]["failed_step"] == "command"
    bad = stacks["bad"]
    assert bad["message"] == "cannot run /nowhere/***: program not found"
    assert "tok-abcdef12" not in r.out + r.err


def test_json_with_dry_run_and_files(tmp_path: Path, shim: Shim) -> None:
    root = make_stacks(tmp_path / "r", {"a": {"compose.yaml": COMPOSE}})
    r = run_kompose("--root", str(root), "--json", "-n", "a", "up", env=shim.env())
    assert r.code == 0
    doc = json.loads(r.out)
    assert doc["dry_run"] is True and doc["stacks"][0]["status"] == "success"
    assert shim.calls() == []
