"""The Swarm backend end to end: the real CLI against a real 3-node cluster (tests/swarmfixture.py,
one per session), plus the checks that stop a run before any hook (no cluster needed).

Stacks are small (busybox, one replica), names unique per test, every stack removed
afterwards; waits are the backend's own polling, bounded by KOMPOSE_SWARM_WAIT_TIMEOUT.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kompose_py.backends import swarm as sw
from kompose_py.backends import swarmargs, swarmengine
from tests.conftest import make_stacks, run_kompose
from tests.swarmfixture import SwarmCluster

SERVICE = """services:
  app:
    image: busybox:latest
    init: true
    command: ["sh", "-c", "echo hello $$GREETING; ${APP_CMD:-while :; do sleep 3600; done}"]
    environment:
      GREETING: ${GREETING}
      FROM_ROOT: ${FROM_ROOT:-unset}
      FROM_STACK: ${FROM_STACK:-unset}
      FROM_E: ${FROM_E:-unset}
    container_name: dropped-on-swarm
    deploy:
      update_config: {failure_action: rollback, monitor: 3s}
"""
# Every hook records its name, arguments and the stack's status.
HOOKS = """
rec() { echo "$KOMPOSE_HOOK $* status=${KOMPOSE_STATUS:-}" >> "$KOMPOSE_ROOT/hooks.log"; }
hook_pre_up() { rec "$@"; }
hook_post_up() { rec "$@"; }
hook_error_up() { rec "$@"; }
hook_finally_up() { rec "$@"; }
hook_pre_down() { rec "$@"; }
hook_post_down() { rec "$@"; }
"""


def root_env(cluster: SwarmCluster, **more: str) -> str:
    values = {"KOMPOSE_ORCHESTRATOR": "swarm", "KOMPOSE_SWARM_ENDPOINT_MODE": "dnsrr",
              "KOMPOSE_SWARM_RESOLVE_IMAGE": "never", "KOMPOSE_SWARM_WAIT_TIMEOUT": "60",
              "DOCKER_HOST": cluster.manager, "GREETING": "from-root", "FROM_ROOT": "root",
              **more}
    return "".join(f"{k}={v}\n" for k, v in values.items())


@pytest.fixture
def stack_names(swarm_cluster: SwarmCluster) -> Iterator[list[str]]:
    """Unique stack names; each is removed from the cluster afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        swarm_cluster.docker("stack", "rm", name, check=False)


def new_name(names: list[str], stem: str = "s") -> str:
    names.append(f"{stem}{uuid.uuid4().hex[:6]}")
    return names[-1]


def hook_log(root: Path) -> list[str]:
    path = root / "hooks.log"
    return path.read_text().splitlines() if path.exists() else []


def service_env(cluster: SwarmCluster, service: str) -> dict[str, str]:
    spec = cluster.inspect("service", "inspect", service)[0]
    env = spec["Spec"]["TaskTemplate"]["ContainerSpec"].get("Env") or []  # type: ignore[index]
    return dict(item.split("=", 1) for item in env)


def availability(cluster: SwarmCluster, node: str, value: str) -> None:
    """`docker node update --availability`, asked again when the manager answers `update out
    of sequence` (another change to the node, e.g. its task states, landed in between)."""
    for _ in range(10):
        r = cluster.docker("node", "update", "--availability", value, node, check=False)
        if r.returncode == 0:
            return
        assert "out of sequence" in r.stderr, r.stderr
    raise AssertionError(f"node {node} kept answering `update out of sequence`")


# -- a whole deploy -------------------------------------------------------------------------
@pytest.mark.docker
def test_up_converges_with_hooks_in_order_and_environment_as_for_compose(
        tmp_path: Path, swarm_cluster: SwarmCluster, stack_names: list[str]) -> None:
    name = new_name(stack_names, "web")
    root = make_stacks(tmp_path / "root", {
        ".env": root_env(swarm_cluster), "hooks.sh": HOOKS,
        name: {"compose.yaml": SERVICE, "hooks.sh": "",
               ".env": "FROM_STACK=stack\nGREETING=from-stack\n"}})
    r = run_kompose("-e", "FROM_E=e", name, "up", "-d", cwd=root)
    assert r.code == 0, r.all
    assert "swarm wait ✓" in r.err
    assert hook_log(root) == ["hook_pre_up up -d status=", "hook_post_up up -d status=success",
                              "hook_finally_up up -d status=success"]
    # The same environment reaches the service as Compose gives its container.
    compose = run_kompose("-e", "KOMPOSE_ORCHESTRATOR=compose", "-e", "FROM_E=e", name,
                          "config", "--format", "json", cwd=root)
    assert compose.code == 0, compose.all
    expected = json.loads(compose.out)["services"]["app"]["environment"]
    assert service_env(swarm_cluster, f"{name}_app") == expected
    assert expected["GREETING"] == "from-root" and expected["FROM_STACK"] == "stack"
    assert expected["FROM_E"] == "e"
    # --status and --list say which orchestrator runs the stack.
    status = run_kompose("--status", "--json", name, cwd=root)
    assert status.code == 0, status.all
    stack = json.loads(status.out)["stacks"][0]
    assert stack["orchestrator"] == "swarm"
    assert stack["services"][0]["service"] == "app"
    assert stack["services"][0]["running"] == stack["services"][0]["desired"] == 1
    assert stack["services"][0]["nodes"]
    listed = json.loads(run_kompose("--list", "--json", name, cwd=root).out)
    assert listed["stacks"][0]["orchestrator"] == "swarm"
    # A service no longer in the compose file is removed by the next up.
    compose = root / name / "compose.yaml"
    compose.write_text(SERVICE + "  extra:\n    image: busybox:latest\n"
                                 "    command: [sleep, '3600']\n")
    assert run_kompose(name, "up", "-d", cwd=root).code == 0
    compose.write_text(SERVICE)
    assert run_kompose(name, "up", "-d", cwd=root).code == 0
    names = swarm_cluster.docker("service", "ls", "--format", "{{.Name}}", "--filter",
                                 f"label=com.docker.stack.namespace={name}").stdout.split()
    assert names == [f"{name}_app"]


@pytest.mark.docker
def test_a_failing_update_is_reported_failed_and_rolled_back(
        tmp_path: Path, swarm_cluster: SwarmCluster, stack_names: list[str]) -> None:
    name = new_name(stack_names, "upd")
    root = make_stacks(tmp_path / "root", {".env": root_env(swarm_cluster), "hooks.sh": HOOKS,
                                           name: {"compose.yaml": SERVICE}})
    assert run_kompose(name, "up", "-d", cwd=root).code == 0
    (root / "hooks.log").unlink()
    r = run_kompose("-e", "APP_CMD=exit 3", name, "up", "-d", cwd=root)
    assert r.code == 1, r.all
    assert "rollback" in r.err and "task exited 3" in r.err, r.err
    assert hook_log(root) == ["hook_pre_up up -d status=", "hook_error_up up -d status=failed",
                              "hook_finally_up up -d status=failed"]
    # The service is back on the command that worked.
    spec = swarm_cluster.inspect("service", "inspect", f"{name}_app")[0]["Spec"]
    args = spec["TaskTemplate"]["ContainerSpec"]["Args"]  # type: ignore[index]
    assert "exit 3" not in " ".join(args)
    # Deploying the good version again converges, though the last update was rolled back.
    again = run_kompose(name, "up", "-d", cwd=root)
    assert again.code == 0, again.all


@pytest.mark.docker
def test_a_first_deploy_that_never_converges_ends_at_the_limit(
        tmp_path: Path, swarm_cluster: SwarmCluster, stack_names: list[str]) -> None:
    never, nowhere = new_name(stack_names, "nev"), new_name(stack_names, "nowh")
    waiting = """services:
  app:
    image: busybox:latest
    command: ["sleep", "3600"]
    healthcheck: {test: ["CMD", "false"], interval: 1s, retries: 10000}
"""
    pinned = """services:
  app:
    image: busybox:latest
    command: ["sleep", "3600"]
    deploy: {placement: {constraints: [node.hostname==no-such-node]}}
"""
    root = make_stacks(tmp_path / "root", {
        ".env": root_env(swarm_cluster, KOMPOSE_SWARM_WAIT_TIMEOUT="4"),
        never: {"compose.yaml": waiting}, nowhere: {"compose.yaml": pinned}})
    r = run_kompose("-j", "2", "*", "up", "-d", cwd=root)
    assert r.code == 1, r.all
    assert "not converged within 4s (KOMPOSE_SWARM_WAIT_TIMEOUT): app: 0/1 running" in r.err
    assert "app: no suitable node" in r.err


@pytest.mark.docker
def test_down_then_up_at_once_and_several_stacks_side_by_side(
        tmp_path: Path, swarm_cluster: SwarmCluster, stack_names: list[str]) -> None:
    names = [new_name(stack_names, "par") for _ in range(4)]
    root = make_stacks(tmp_path / "root", {
        ".env": root_env(swarm_cluster), **{n: {"compose.yaml": SERVICE} for n in names}})
    r = run_kompose("-j", "4", "par*", "up", "-d", cwd=root)
    assert r.code == 0, r.all
    assert r.err.count("swarm wait ✓") == 4
    down = run_kompose(names[0], "down", cwd=root)
    assert down.code == 0, down.all
    assert not swarm_cluster.docker("network", "ls", "-q", "--filter",
                                    f"label=com.docker.stack.namespace={names[0]}").stdout.split()
    up = run_kompose(names[0], "up", "-d", cwd=root)
    assert up.code == 0, up.all
    status = run_kompose("--status", "par*", cwd=root)
    assert status.code == 0, status.all
    assert "4/4 stacks ok" in status.out
    assert run_kompose("-j", "4", "par*", "down", cwd=root).code == 0
    for n in names:
        assert not swarm_cluster.docker("service", "ls", "-q", "--filter",
                                        f"label=com.docker.stack.namespace={n}").stdout.split()


@pytest.mark.docker
def test_compose_and_swarm_stacks_mix_in_one_run(
        tmp_path: Path, swarm_cluster: SwarmCluster, stack_names: list[str]) -> None:
    on_swarm = new_name(stack_names, "mixs")
    on_compose = f"mixc{uuid.uuid4().hex[:6]}"
    swarm_env = root_env(swarm_cluster).replace("GREETING=from-root\n", "")
    root = make_stacks(tmp_path / "root", {
        ".env": "GREETING=from-root\n",
        on_swarm: {"compose.yaml": SERVICE, ".env": swarm_env},
        on_compose: {"compose.yaml": SERVICE.replace("    deploy:\n      update_config: "
                                                     "{failure_action: rollback, monitor: 3s}\n",
                                                     "    pull_policy: never\n")}})
    try:
        r = run_kompose("-j", "2", "*", "up", "-d", cwd=root)
        assert r.code == 0, r.all
        assert "swarm wait ✓" in r.err and "compose up ✓" in r.err
        status = json.loads(run_kompose("--status", "--json", cwd=root).out)
        kinds = {s["stack"]: (s["orchestrator"], s["ok"]) for s in status["stacks"]}
        assert kinds == {on_swarm: ("swarm", True), on_compose: ("compose", True)}
        assert run_kompose("-j", "2", "*", "down", cwd=root).code == 0
    finally:
        subprocess.run(["docker", "compose", "-p", on_compose, "down", "-t", "1"],
                       capture_output=True, env={k: v for k, v in os.environ.items()
                                                 if not k.startswith("DOCKER_")})


@pytest.mark.docker
def test_ps_logs_scale_and_exec(tmp_path: Path, swarm_cluster: SwarmCluster,
                                stack_names: list[str]) -> None:
    name = new_name(stack_names, "ops")
    pinned = SERVICE.replace(
        "    deploy:\n",
        f"    deploy:\n      placement: {{constraints: [node.hostname=="
        f"{swarm_cluster.workers[0].hostname}]}}\n")
    root = make_stacks(tmp_path / "root", {".env": root_env(swarm_cluster),
                                           name: {"compose.yaml": pinned}})
    assert run_kompose(name, "up", "-d", cwd=root).code == 0
    ps = run_kompose(name, "ps", cwd=root)
    assert ps.code == 0 and f"{name}_app.1" in ps.out, ps.all
    logs = run_kompose(name, "logs", "--tail", "5", cwd=root)
    assert logs.code == 0 and "hello from-root" in logs.out, logs.all
    assert f"{name}_app.1." in logs.out  # each line names its task
    # The task runs on a worker: without a way to its engine, one clear line.
    r = run_kompose(name, "exec", "-T", "app", "sh", "-c", "exit 7", cwd=root)
    assert r.code == 1
    assert f"runs on node {swarm_cluster.workers[0].hostname}" in r.err
    assert "KOMPOSE_SWARM_NODE_HOST" in r.err
    # With a template from the node's hostname to its engine, exec reaches it.
    r = run_kompose(name, "exec", "-T", "app", "sh", "-c", "echo in-$(hostname); exit 7",
                    cwd=root, env=node_sockets(tmp_path, swarm_cluster))
    assert "in-" in r.out and "exit 7" in r.err, r.all
    scaled = run_kompose(name, "scale", "app=2", cwd=root)
    assert scaled.code == 0, scaled.all
    status = json.loads(run_kompose("--status", "--json", name, cwd=root).out)
    assert status["stacks"][0]["services"][0]["running"] == 2


def node_sockets(tmp_path: Path, cluster: SwarmCluster) -> dict[str, str]:
    """A KOMPOSE_SWARM_NODE_HOST template from each node's hostname to its engine."""
    sockets = tmp_path / "engines"
    sockets.mkdir(exist_ok=True)
    for node in cluster.nodes:
        link = sockets / f"{node.hostname}.sock"
        if not link.exists():
            link.symlink_to(node.host.removeprefix("unix://"))
    return {"KOMPOSE_SWARM_NODE_HOST": f"unix://{sockets}/{{hostname}}.sock"}


@pytest.mark.docker
def test_top_shows_each_task_where_kompose_reaches_its_node(
        tmp_path: Path, swarm_cluster: SwarmCluster, stack_names: list[str]) -> None:
    name = new_name(stack_names, "top")
    manager, worker = swarm_cluster.nodes[0].hostname, swarm_cluster.workers[0].hostname
    compose = "services:\n" + "".join(
        f"  {service}:\n    image: busybox:latest\n    init: true\n"
        f"    command: [sleep, '{seconds}']\n"
        f"    deploy: {{placement: {{constraints: [node.hostname=={node}]}}}}\n"
        for service, seconds, node in (("here", 3601, manager), ("there", 3602, worker)))
    root = make_stacks(tmp_path / "root", {".env": root_env(swarm_cluster),
                                           name: {"compose.yaml": compose}})
    assert run_kompose(name, "up", "-d", cwd=root).code == 0
    # The manager's task directly; the worker's task is one line saying how to reach it.
    r = run_kompose("--json", name, "top", cwd=root)
    assert r.code == 0, r.all
    assert f"{name}_here.1@{manager}" in r.err and "sleep 3601" in r.err, r.all
    assert "sleep 3602" not in r.all
    line = (f"task {name}_there.1 runs on node {worker}, whose engine kompose cannot reach; "
            "set KOMPOSE_SWARM_NODE_HOST (e.g. ssh://{hostname}) to see its processes")
    assert line in r.err
    (stack,) = json.loads(r.out)["stacks"]
    assert stack["status"] == "success" and stack["warnings"] == [line]
    # Nothing could be shown: the stack fails, with the node and the variable.
    only = run_kompose(name, "top", "there", cwd=root)
    assert only.code == 1, only.all
    assert (f"every running task of {name}_there is on a node kompose cannot reach ({worker}; "
            "KOMPOSE_SWARM_NODE_HOST)") in only.err
    # Through the node's own engine, every task, each under its title.
    both = run_kompose(name, "top", cwd=root, env=node_sockets(tmp_path, swarm_cluster))
    assert both.code == 0, both.all
    titles = [ln for ln in both.out.splitlines() if ln.startswith(f"{name}_")]
    assert titles == [f"{name}_here.1@{manager}", f"{name}_there.1@{worker}"], both.out
    assert "sleep 3601" in both.out and "sleep 3602" in both.out
    assert "cannot reach" not in both.err
    gone = run_kompose(name, "top", "nosuch", cwd=root)
    assert gone.code == 1 and f"{name}_nosuch has no running task" in gone.err, gone.all


@pytest.mark.docker
def test_a_drained_node_fails_a_pinned_service_until_it_is_active_again(
        tmp_path: Path, swarm_cluster: SwarmCluster, stack_names: list[str]) -> None:
    name = new_name(stack_names, "drn")
    node = swarm_cluster.workers[0].hostname
    placement = f"      placement: {{constraints: [node.hostname=={node}]}}\n"
    pinned = SERVICE.replace("    deploy:\n", "    deploy:\n" + placement)
    root = make_stacks(tmp_path / "root", {".env": root_env(swarm_cluster), "hooks.sh": HOOKS,
                                           name: {"compose.yaml": pinned}})
    availability(swarm_cluster, node, "drain")
    try:
        r = run_kompose(name, "up", "-d", cwd=root)
        assert r.code == 1, r.all
        assert "app: no suitable node" in r.err and "not available for new tasks" in r.err
        assert "hook_post_up" not in " ".join(hook_log(root))
        status = run_kompose("--status", name, cwd=root)
        assert status.code == 1 and "app: 0/1 running" in status.out, status.all
    finally:
        availability(swarm_cluster, node, "active")
    again = run_kompose(name, "up", "-d", cwd=root)
    assert again.code == 0, again.all


# -- checks before any hook (no cluster) --------------------------------------------------------
def plain_root(tmp_path: Path, compose: str) -> Path:
    return make_stacks(tmp_path / "root", {
        ".env": "KOMPOSE_ORCHESTRATOR=swarm\nKOMPOSE_SWARM_ENDPOINT_MODE=dnsrr\n"
                "DOCKER_HOST=unix:///nonexistent.sock\n",
        "hooks.sh": HOOKS, "web": {"compose.yaml": compose,
                                   "hooks.sh": "hook_pre_build() { :; }\n"}})


@pytest.mark.docker
def test_refused_keys_and_verbs_stop_the_run_before_any_hook(tmp_path: Path) -> None:
    root = plain_root(tmp_path, "services:\n  app:\n    image: busybox:latest\n"
                                "    privileged: true\n    build: .\n")
    r = run_kompose("web", "up", "-d", cwd=root)
    assert r.code == 2, r.all
    assert "web: service app: privileged: refused on swarm" in r.err
    assert not hook_log(root)
    r = run_kompose("web", "build", cwd=root)
    assert r.code == 2 and "'build' has no meaning on a swarm stack" in r.err, r.all
    check = run_kompose("web", "env:check", cwd=root)
    assert check.code == 1
    assert "service app: privileged: refused on swarm" in check.out
    assert "warning: swarm: service app: build: ignored on swarm" in check.out
    hooks = run_kompose("web", "hooks:check", cwd=root)
    assert "hook_pre_build never runs" in hooks.out, hooks.all
    bad = run_kompose("-e", "KOMPOSE_ORCHESTRATOR=nomad", "web", "ps", cwd=root)
    assert bad.code == 2 and "KOMPOSE_ORCHESTRATOR='nomad'" in bad.err


@pytest.mark.docker
def test_an_unreachable_manager_is_one_line_and_nothing_runs(tmp_path: Path) -> None:
    root = plain_root(tmp_path, "services:\n  app:\n    image: busybox:latest\n")
    r = run_kompose("web", "up", "-d", cwd=root)
    assert r.code == 1, r.all
    assert "cannot reach the Docker engine at unix:///nonexistent.sock" in r.err
    assert "not run" in r.err and not hook_log(root)


@pytest.mark.docker
def test_dry_run_shows_every_step_and_each_warning(tmp_path: Path) -> None:
    root = plain_root(tmp_path, "services:\n  app:\n    image: busybox:latest\n"
                                "    container_name: xy\n    restart: always\n")
    r = run_kompose("web", "up", "-d", "--dry-run", cwd=root)
    assert r.code == 0, r.all
    assert "warning: service app: container_name: ignored on swarm" in r.err
    assert "note: service app: restart: mapped: deploy.restart_policy.condition=any" in r.err
    assert "docker stack deploy --detach=true --prune -c - web  would run" in r.err
    assert "would wait up to 300s (KOMPOSE_SWARM_WAIT_TIMEOUT)" in r.err
    assert "swarm files: compose.yaml" in r.err
    # Without --verbose or a dry-run, warnings stay out of the way.
    quiet = run_kompose("web", "config", cwd=root)
    assert "container_name" not in quiet.err and "restart_policy" in quiet.out, quiet.all


@pytest.mark.docker
@pytest.mark.parametrize(("args", "line"), [
    (("up", "-d", "app"), "web: up app: a swarm stack is deployed whole; use `restart app` "
                          "or `scale app=N` for one service"),
    (("up", "--build"), "web: up --build: no meaning on a swarm stack (docker stack deploy "
                        "takes the whole file); use `up -d`"),
    (("up", "--wait-timeout", "soon"), "web: up --wait-timeout takes seconds, not 'soon'"),
    (("restart", "-t", "5", "app"), "web: restart -t: no meaning on a swarm stack (a task "
                                    "stops within its service's stop_grace_period); use "
                                    "`restart [SERVICE…]`"),
    (("scale",), "web: scale needs SERVICE=REPLICAS arguments (e.g. `scale app=2`)"),
    (("scale", "app"), "web: scale app: expected SERVICE=REPLICAS"),
    (("scale", "--no-deps", "app=2"), "web: scale --no-deps: no meaning on a swarm stack"),
    (("logs", "--index", "2", "app"), "web: logs --index: no meaning on a swarm stack"),
    (("exec", "--user=x", "-l", "app", "sh"), "web: exec -l: no meaning on a swarm stack"),
    (("exec", "app"), "web: exec app: no command to run in app (e.g. `exec app sh`)"),
    (("exec", "--index", "x", "app", "sh"), "web: exec --index 'x': expected a task's slot"),
    (("top", "-o", "pid"), "web: top -o: no meaning on a swarm stack"),
    (("ps", "--services"), "web: ps --services: no meaning on a swarm stack"),
    (("down", "-t", "0", "-v"), "web: down -v: a swarm stack's volumes and images stay on each "
                                "node that ran a task"),
])
def test_arguments_swarm_cannot_honour_stop_the_run_before_any_hook(
        tmp_path: Path, args: tuple[str, ...], line: str) -> None:
    """On a reachable engine, so that only the check keeps the pre hook from running."""
    root = make_stacks(tmp_path / "root", {
        ".env": "KOMPOSE_ORCHESTRATOR=swarm\nKOMPOSE_SWARM_ENDPOINT_MODE=dnsrr\n",
        "hooks.sh": "".join(f'hook_pre_{verb}() {{ echo "$*" >> "$KOMPOSE_ROOT/hooks.log"; }}\n'
                            for verb in ("up", "restart", "scale", "logs", "exec", "top", "ps",
                                         "down")),
        "web": {"compose.yaml": "services:\n  app:\n    image: busybox:latest\n"}})
    for dry in ((), ("--dry-run",)):
        r = run_kompose(*dry, "web", *args, cwd=root)
        assert r.code == 2, r.all
        assert f"kompose: error: {line}" in r.err, r.err
        assert not hook_log(root)


# -- pure parts -------------------------------------------------------------------------------
def test_compose_options_in_docker_service_spelling() -> None:
    assert swarmargs.logs_options(["-f", "--tail", "3", "db", "-t"]) == (
        ["--follow", "--tail", "3", "--timestamps"], ["db"])
    assert swarmargs.logs_options(["--tail=1", "--no-log-prefix", "--no-color"]) == (
        ["--tail", "1", "--raw"], [])
    assert swarmargs.exec_options(["-T", "-e", "A=1", "--index", "2", "db", "psql", "-c",
                                   "x"]) == (["-T", "-e", "A=1"], 2, "db", ["psql", "-c", "x"])
    with pytest.raises(ValueError):
        swarmargs.exec_options(["db"])
    assert swarmargs.ps_argv(["-a", "db"], "p") == ("docker", "stack", "ps", "--filter",
                                                    "name=p_db", "p")
    # A value is no service name.
    assert swarmargs.ps_argv(["--format", "json"], "p") == (
        "docker", "stack", "ps", "--filter", "desired-state=running", "--format", "json", "p")
    for verb, *args in (["up", "-d", "--wait-timeout", "5"], ["up", "--wait-timeout=5"],
                        ["logs", "-f", "-n", "3", "--since=1m", "--no-color", "app"],
                        ["scale", "app=2", "db=0"], ["exec", "-T", "--index", "2", "app", "sh"],
                        ["top"], ["top", "app"], ["restart", "app"],
                        ["down", "-t", "0", "--remove-orphans"],
                        ["ps", "-a", "-q", "--format", "json", "app"]):
        assert sw.SWARM.refusal(verb, args) is None, (verb, args)
    assert sw.SWARM.refusal("up") is None and sw.SWARM.refusal("my-plugin") is None
    assert "scale SERVICE=0" in (sw.SWARM.refusal("stop") or "")


def _service(template: Any, started: str = "", prev: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"ID": "s1", "Spec": {"Name": "p_app", "TaskTemplate": template,
                                               "Mode": {"Replicated": {"Replicas": 1}}}}
    if started:
        out["UpdateStatus"] = {"State": "rollback_completed", "StartedAt": started}
    if prev:
        out["PreviousSpec"] = {}
    return out


def test_an_old_rollback_says_nothing_about_an_unchanged_service() -> None:
    running = [{"ServiceID": "s1", "DesiredState": "running", "Spec": {"x": 1},
                "Status": {"State": "running"}}]
    old = _service({"x": 1}, "2026-01-01T00:00:00Z")
    # Same template: no update happened; the task runs -> converged.
    (state,) = swarmengine.verdicts([old], running, {"p_app": old})
    assert state.verdict == "converged"
    # A changed template whose update has not started yet: pending, not failed.
    new = _service({"x": 2}, "2026-01-01T00:00:00Z")
    (state,) = swarmengine.verdicts([new], running, {"p_app": old})
    assert state.verdict == "pending" and "not started" in state.reason


def test_wait_limit_setting() -> None:
    assert swarmengine.wait_limit({}) == 300
    assert swarmengine.wait_limit({"KOMPOSE_SWARM_WAIT_TIMEOUT": "7.5"}) == 7.5
    assert swarmengine.wait_limit({"KOMPOSE_SWARM_WAIT_TIMEOUT": "x"}) == 300


