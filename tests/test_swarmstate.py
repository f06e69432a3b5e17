"""Service verdicts (converged / pending / failed) from what a real swarm manager reports, and
offline from hand-made JSON in the same shapes."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from kompose_py.backends import swarmstate as ss

if TYPE_CHECKING:
    from tests.swarmfixture import SwarmCluster

# until the root conftest registers it
pytest_plugins = ["tests.swarmfixture"]

TEMPLATE = {"ContainerSpec": {"Image": "busybox:latest", "Args": ["sleep", "9"]}, "ForceUpdate": 0}


def service(replicas: int = 2, update: dict[str, Any] | None = None) -> dict[str, Any]:
    s: dict[str, Any] = {
        "ID": "svc1",
        "Spec": {
            "Name": "st_app",
            "TaskTemplate": TEMPLATE,
            "Mode": {"Replicated": {"Replicas": replicas}},
        },
    }
    if update:
        s["UpdateStatus"] = update
        s["PreviousSpec"] = {}
    return s


def task(
    state: str,
    desired: str = "running",
    err: str | None = None,
    spec: Any = TEMPLATE,
    ts: str = "1",
) -> dict[str, Any]:
    status: dict[str, Any] = {"State": state, "Timestamp": ts}
    if err:
        status["Err"] = err
    return {"ServiceID": "svc1", "Spec": spec, "DesiredState": desired, "Status": status}


def test_all_running_is_converged() -> None:
    st = ss.decide(service(), [task("running"), task("running")])
    assert (st.verdict, st.running, st.desired) == ("converged", 2, 2)


def test_starting_or_missing_tasks_are_pending() -> None:
    assert ss.decide(service(), [task("running"), task("starting")]).verdict == "pending"
    assert ss.decide(service(), [task("running")]).reason == "1/2 running"


def test_tasks_of_an_older_spec_do_not_count() -> None:
    old = {"ContainerSpec": {"Image": "busybox:latest", "Args": ["sleep", "8"]}, "ForceUpdate": 0}
    st = ss.decide(service(), [task("running", spec=old), task("running", spec=old)])
    assert (st.verdict, st.running) == ("pending", 0)


def test_defaults_the_manager_fills_in_do_not_make_a_task_foreign() -> None:
    svc = service()
    svc["Spec"]["TaskTemplate"] = {
        **TEMPLATE,
        "Runtime": "container",
        "RestartPolicy": {"Condition": "any", "Delay": 5},
    }
    t = {**TEMPLATE, "RestartPolicy": {"Condition": "any"}}
    assert ss.decide(svc, [task("running", spec=t)] * 2).verdict == "converged"


@pytest.mark.parametrize(
    "state", ["paused", "rollback_started", "rollback_paused", "rollback_completed"]
)
def test_failed_update_states_fail_with_the_task_error(state: str) -> None:
    tasks = [
        task("running"),
        task("running"),
        task("failed", "shutdown", "task: non-zero exit (3)", spec={}),
    ]
    st = ss.decide(service(update={"State": state, "StartedAt": "2026-01-01T00:00:00Z"}), tasks)
    assert (st.verdict, st.reason) == ("failed", f"{state}: task exited 3")


def test_an_update_status_from_before_this_deploy_is_not_believed() -> None:
    svc = service(
        update={"State": "rollback_completed", "StartedAt": "2026-01-01T00:00:00.123456789Z"}
    )
    st = ss.decide(svc, [task("running")] * 2, since="2026-01-01T00:00:01Z")
    assert (st.verdict, st.reason) == ("pending", "update not started yet")
    st = ss.decide(svc, [task("running")] * 2, since="2025-12-31T23:59:59+00:00")
    assert st.verdict == "failed"


def test_repeated_failures_fail_fewer_are_pending() -> None:
    failing = [task("failed", "shutdown", "task: non-zero exit (1)", ts=str(i)) for i in range(2)]
    assert ss.decide(service(), failing).verdict == "pending"
    failing.append(task("rejected", "shutdown", "No such image: x:1", ts="9"))
    st = ss.decide(service(), failing)
    assert (st.verdict, st.reason) == ("failed", "tasks failing: No such image: x:1")
    assert ss.decide(service(), failing, failures=4).verdict == "pending"


def test_no_suitable_node_fails_at_once() -> None:
    err = "no suitable node (scheduling constraints not satisfied on 3 nodes)"
    st = ss.decide(service(1), [task("pending", err=err)])
    assert (st.verdict, st.reason) == ("failed", err)


def test_overall_and_decide_all() -> None:
    other = {
        "ID": "svc2",
        "Spec": {"Name": "st_db", "TaskTemplate": TEMPLATE, "Mode": {"Global": {}}},
    }
    t2 = {**task("running"), "ServiceID": "svc2"}
    states = ss.decide_all([service(1), other], [task("running"), t2])
    assert [(s.service, s.verdict) for s in states] == [
        ("st_app", "converged"),
        ("st_db", "converged"),
    ]
    assert ss.overall(states) == "converged"
    assert ss.overall([*states, ss.ServiceState("x", "pending", "", 0, 1)]) == "pending"
    assert ss.overall([*states, ss.ServiceState("x", "failed", "r", 0, 1)]) == "failed"


# ---------------------------------------------------------------- on the real swarm


@pytest.fixture
def stack(swarm_cluster: SwarmCluster) -> Iterator[str]:
    name = "s" + uuid.uuid4().hex[:8]
    yield name
    swarm_cluster.docker("stack", "rm", name, check=False)


def deploy(c: SwarmCluster, stack: str, svc: dict[str, Any]) -> None:
    deploy_ = {
        "endpoint_mode": "dnsrr",
        "update_config": {"failure_action": "rollback", "monitor": "2s"},
    }
    deploy_.update(svc.pop("deploy", {}))
    doc = {"services": {"app": {"image": "busybox:latest", "init": True, **svc, "deploy": deploy_}}}
    c.docker("stack", "deploy", "--resolve-image", "never", "-c", "-", stack, input=json.dumps(doc))


def poll(c: SwarmCluster, stack: str, until: set[str], limit: float = 90) -> list[ss.ServiceState]:
    """Verdicts of the stack's services, polled until one of `until` or `limit` seconds (a
    guard against hanging, not a timing assertion)."""
    deadline = time.monotonic() + limit
    while True:
        names = c.docker(
            "service", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={stack}"
        ).stdout.split()
        services = c.inspect("service", "inspect", *names)
        ids = c.docker("service", "ps", "-q", "--no-trunc", *names).stdout.split()
        tasks = c.inspect("inspect", *ids) if ids else []
        states = ss.decide_all(services, tasks)
        if ss.overall(states) in until or time.monotonic() > deadline:
            return states
        time.sleep(0.3)


@pytest.mark.docker
def test_a_good_deploy_converges(swarm_cluster: SwarmCluster, stack: str) -> None:
    deploy(swarm_cluster, stack, {"command": ["sleep", "1000"], "deploy": {"replicas": 3}})
    [st] = poll(swarm_cluster, stack, {"converged", "failed"})
    assert (st.verdict, st.running, st.desired) == ("converged", 3, 3)


@pytest.mark.docker
def test_a_failing_update_is_failed_with_reason_and_rolled_back(
    swarm_cluster: SwarmCluster, stack: str
) -> None:
    c = swarm_cluster
    deploy(c, stack, {"command": ["sleep", "1000"], "deploy": {"replicas": 2}})
    assert poll(c, stack, {"converged", "failed"})[0].verdict == "converged"
    deploy(c, stack, {"command": ["sh", "-c", "sleep 1; exit 4"], "deploy": {"replicas": 2}})
    [st] = poll(c, stack, {"failed"})
    assert st.verdict == "failed"
    assert st.reason in ("rollback_started: task exited 4", "rollback_completed: task exited 4")
    # stays failed once the rollback is done: the old spec running is not success
    deadline = time.monotonic() + 90
    while (
        json.loads(
            c.docker(
                "service", "inspect", f"{stack}_app", "--format", "{{json .UpdateStatus.State}}"
            ).stdout
        )
        != "rollback_completed"
        and time.monotonic() < deadline
    ):
        time.sleep(0.3)
    [st] = poll(c, stack, {"failed"})
    assert (st.verdict, st.reason) == ("failed", "rollback_completed: task exited 4")


@pytest.mark.docker
def test_a_first_deploy_that_crashes_is_pending_then_failed(
    swarm_cluster: SwarmCluster, stack: str
) -> None:
    """No UpdateStatus on a first deploy: only the count of failed tasks of the current spec
    tells a crash loop (pending below `failures`, failed from there)."""
    deploy(swarm_cluster, stack, {"command": ["sh", "-c", "exit 1"], "deploy": {"replicas": 2}})
    [st] = poll(swarm_cluster, stack, {"failed"})
    # a crashing task may be "running" for a moment, so `running` is not asserted
    assert (st.verdict, st.reason) == ("failed", "tasks failing: task exited 1")


@pytest.mark.docker
def test_a_constraint_no_node_meets_is_no_suitable_node(
    swarm_cluster: SwarmCluster, stack: str
) -> None:
    deploy(
        swarm_cluster,
        stack,
        {
            "command": ["sleep", "1000"],
            "deploy": {"placement": {"constraints": ["node.hostname==nowhere"]}},
        },
    )
    [st] = poll(swarm_cluster, stack, {"failed", "converged"})
    assert st.verdict == "failed"
    assert st.reason.startswith("no suitable node (scheduling constraints not satisfied on 3 nodes")
