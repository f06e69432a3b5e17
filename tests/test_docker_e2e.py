"""End to end on the real Docker engine with Compose v2: stacks really up,
hooks in order with their arguments, cwd and environment, a failing stack failing alone,
exec with stdin, down removing everything."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import SERVICE, make_stacks, project_containers, run_kompose

pytestmark = pytest.mark.usefixtures("docker_engine")


HOOKS = r"""
log() {
  local head="$KOMPOSE_HOOK|$PWD|$stack|$FROM_ENV|${KOMPOSE_STATUS:-}|"
  printf '%s\n' "$head$(printf '<%s>' "$@")" >>"$HOOK_LOG"
}
hook_pre_up() {
  log "$@"
  # Proof that the containers are not up yet when the pre hook runs.
  docker compose ps -q | wc -l | tr -d ' ' >"$HOOK_LOG.$stack.pre_count"
}
hook_post_up() {
  log "$@"
  docker compose ps --status running -q | wc -l | tr -d ' ' >"$HOOK_LOG.$stack.post_count"
}
hook_error_up() { log "$@"; }
hook_finally_up() { log "$@"; }
hook_pre_down() { log "$@"; }
hook_post_down() { log "$@"; }
"""


def test_real_engine_up_hooks_failure_exec_down(tmp_path: Path,
                                                project_name: Callable[[str], str]) -> None:
    names = {s: project_name(s) for s in ("alpha", "beta", "gamma", "broken")}
    tree = {}
    for stack in ("alpha", "beta", "gamma"):
        tree[stack] = {"compose.yaml": SERVICE, "hooks.sh": HOOKS,
                       ".env": f"COMPOSE_PROJECT_NAME={names[stack]}\nFROM_ENV=env-of-{stack}\n"}
    tree["broken"] = {
        "compose.yaml": SERVICE.replace("busybox:latest", "kompose-test/does-not-exist:1"),
        "hooks.sh": HOOKS, ".env": f"COMPOSE_PROJECT_NAME={names['broken']}\n"}
    root = make_stacks(tmp_path / "root", tree)
    log = tmp_path / "hooks.log"
    env = {"HOOK_LOG": str(log)}

    r = run_kompose("--root", str(root), "*", "up", "-d", "--wait", env=env, timeout=300)
    assert r.code == 1, r.err
    assert "Summary: 3 succeeded, 1 failed, 0 skipped out of 4 stacks" in r.err
    assert "✗ broken failed at command" in r.err
    for stack in ("alpha", "beta", "gamma"):
        assert project_containers(names[stack]) == [f"{names[stack]}-app-1"]
        assert (tmp_path / f"hooks.log.{stack}.pre_count").read_text().strip() == "0"
        assert (tmp_path / f"hooks.log.{stack}.post_count").read_text().strip() == "1"
    assert project_containers(names["broken"]) == []

    lines = log.read_text().splitlines()
    want = []
    for stack in ("alpha", "beta", "broken", "gamma"):
        from_env = f"env-of-{stack}" if stack != "broken" else ""
        d = root / stack
        if stack == "broken":
            want += [f"hook_pre_up|{d}|broken|{from_env}||<up><-d><--wait>",
                     f"hook_error_up|{d}|broken|{from_env}|failed|<up><-d><--wait>",
                     f"hook_finally_up|{d}|broken|{from_env}|failed|<up><-d><--wait>"]
        else:
            want += [f"hook_pre_up|{d}|{stack}|{from_env}||<up><-d><--wait>",
                     f"hook_post_up|{d}|{stack}|{from_env}|success|<up><-d><--wait>",
                     f"hook_finally_up|{d}|{stack}|{from_env}|success|<up><-d><--wait>"]
    assert lines == want

    # The stack's .env reached compose (and so the container), and no other stack's did.
    out = subprocess.run(["docker", "exec", f"{names['beta']}-app-1", "sh", "-c", "echo $FROM_ENV"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "env-of-beta"

    # exec -T with stdin: the data really goes through the container and back.
    r = run_kompose("--root", str(root), "alpha", "exec", "-T", "app", "sh", "-c",
                    "tr a-z A-Z; echo \"in=$FROM_ENV\"", input="hello from stdin\n")
    assert r.code == 0, r.err
    assert r.out == "HELLO FROM STDIN\nin=env-of-alpha\n"

    # logs -n after COMMAND belongs to compose.
    r = run_kompose("--root", str(root), "gamma", "logs", "-n", "1", "--no-log-prefix")
    assert r.code == 0, r.err
    assert r.out.strip() == "ready"

    r = run_kompose("--root", str(root), "*", "down", "-t", "1", env=env, timeout=300)
    assert r.code == 0, r.err
    for name in names.values():
        assert project_containers(name, running_only=False) == []
    networks = subprocess.run(["docker", "network", "ls", "--format", "{{.Name}}"],
                              capture_output=True, text=True, check=True).stdout.split()
    assert not [n for n in networks if any(n.startswith(p) for p in names.values())]
    down_lines = log.read_text().splitlines()[len(want):]
    assert [x.split("|")[0] + "@" + x.split("|")[2] for x in down_lines] == [
        "hook_pre_down@alpha", "hook_post_down@alpha", "hook_pre_down@beta",
        "hook_post_down@beta", "hook_pre_down@broken", "hook_post_down@broken",
        "hook_pre_down@gamma", "hook_post_down@gamma"]


def test_config_output_stays_clean_on_stdout(tmp_path: Path,
                                             project_name: Callable[[str], str]) -> None:
    name = project_name("cfg")
    root = make_stacks(tmp_path / "root", {
        "cfg": {"compose.yaml": SERVICE, ".env": f"COMPOSE_PROJECT_NAME={name}\nFROM_ENV=x1\n"}})
    r = run_kompose("--root", str(root), "cfg", "config", "--format", "json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)  # kompose's own lines went to stderr
    assert doc["name"] == name
    assert doc["services"]["app"]["environment"]["FROM_ENV"] == "x1"


def test_interactive_exec_keeps_the_terminal(tmp_path: Path,
                                             project_name: Callable[[str], str]) -> None:
    """One stack at a time on a terminal: `exec` gets a real TTY inside the container."""
    from tests.conftest import run_on_terminal

    name = project_name("tty")
    root = make_stacks(tmp_path / "root", {
        "tty": {"compose.yaml": SERVICE, ".env": f"COMPOSE_PROJECT_NAME={name}\n"}})
    assert run_kompose("--root", str(root), "tty", "up", "-d", "--wait",
                       timeout=300).code == 0
    code, shown = run_on_terminal("--root", str(root), "tty", "exec", "app", "sh", "-c",
                                  "if [ -t 0 ] && [ -t 1 ]; then echo has-a-tty; fi")
    assert code == 0, shown
    assert "has-a-tty" in shown
    # Without a terminal, the same command gets none (and does not hang waiting for one).
    r = run_kompose("--root", str(root), "tty", "exec", "-T", "app", "sh", "-c",
                    "if [ -t 0 ]; then echo has-a-tty; else echo no-tty; fi")
    assert r.out.strip() == "no-tty"
