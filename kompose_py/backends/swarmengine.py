"""What kompose asks a Swarm manager: a stack's services and tasks (for the convergence wait),
whether anything of a removed stack remains, the running task of a service (exec), and one
listing of every service and task of an engine for ``--status``.

Every question is a read-only docker CLI call against the stack's engine (``DOCKER_HOST`` /
``DOCKER_CONTEXT``, the manager); the verdicts come from swarmstate.py.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kompose_py.backends import swarmstate
from kompose_py.backends.base import ServiceDetail, Steps
from kompose_py.runner.command import Command
from kompose_py.runner.run import Runner

NAMESPACE_LABEL = "com.docker.stack.namespace"
SERVICE_NAME_LABEL = "com.docker.swarm.service.name"
WAIT_KEY = "KOMPOSE_SWARM_WAIT_TIMEOUT"
DEFAULT_WAIT = 300.0
POLL = 0.5  # seconds between two looks at the manager while waiting


class EngineError(Exception):
    """A docker call failed: why, in one line."""


def ask(runner: Runner, env: Mapping[str, str], cwd: Path, *args: str,
        timeout: float = 60) -> str:
    outcome = runner.run(Command(("docker", *args), cwd, env, stdin="null", stdout="capture",
                                 capture_stderr=True, echo_stderr=False, timeout=timeout))
    if not outcome.ok:
        raise EngineError(f"docker {args[0]} {args[1] if len(args) > 1 else ''}".rstrip()
                          + f": {outcome.reason}")
    return outcome.stdout.decode(errors="replace")


def _json_list(text: str) -> list[dict[str, Any]]:
    data = json.loads(text or "[]")
    return [d for d in data if isinstance(d, dict)] if isinstance(data, list) else []


def wait_limit(env: Mapping[str, str]) -> float:
    """KOMPOSE_SWARM_WAIT_TIMEOUT seconds (default 300): how long ``up``, ``restart``,
    ``scale`` and ``down`` wait for the cluster."""
    try:
        value = float(env.get(WAIT_KEY) or DEFAULT_WAIT)
    except ValueError:
        return DEFAULT_WAIT
    return value if value > 0 else DEFAULT_WAIT


def services(runner: Runner, env: Mapping[str, str], cwd: Path,
             project: str) -> list[dict[str, Any]]:
    """``docker service inspect`` of every service of the stack."""
    ids = ask(runner, env, cwd, "service", "ls", "-q", "--filter",
              f"label={NAMESPACE_LABEL}={project}").split()
    return _json_list(ask(runner, env, cwd, "service", "inspect", *ids)) if ids else []


def tasks(runner: Runner, env: Mapping[str, str], cwd: Path,
          service_ids: Sequence[str]) -> list[dict[str, Any]]:
    """``docker inspect`` of every task (history included) of these services."""
    if not service_ids:
        return []
    ids = ask(runner, env, cwd, "service", "ps", "-q", "--no-trunc", *service_ids).split()
    return _json_list(ask(runner, env, cwd, "inspect", "--type", "task", *sorted(set(ids)))) \
        if ids else []


def short(name: str, project: str) -> str:
    return name.removeprefix(project + "_")


def _template(service: Mapping[str, Any]) -> Any:
    return (service.get("Spec") or {}).get("TaskTemplate")


def _update_started(service: Mapping[str, Any]) -> str:
    return str((service.get("UpdateStatus") or {}).get("StartedAt") or "")


def verdicts(now: Sequence[dict[str, Any]], found_tasks: list[dict[str, Any]],
             before: Mapping[str, dict[str, Any]]) -> list[swarmstate.ServiceState]:
    """One verdict per service. ``before``: the services as they were before this deploy
    (by name). An update state that was already there before (same start time) belongs to
    an earlier deploy: when the task template is still the one from before, this deploy
    changed nothing to update and that state says nothing; when the template changed, the
    update has not started yet. An update started since (a rollback included: it reverts
    the template to the old one) is judged as it stands."""
    judged: list[dict[str, Any]] = []
    waiting: list[swarmstate.ServiceState] = []
    for service in now:
        name = str((service.get("Spec") or {}).get("Name") or "")
        old = before.get(name)
        if old is None or _update_started(old) != _update_started(service):
            judged.append(service)
        elif _template(old) == _template(service):
            judged.append({k: v for k, v in service.items() if k != "UpdateStatus"})
        else:
            waiting.append(swarmstate.ServiceState(name, "pending", "update not started yet",
                                                   0, 0))
    return [*swarmstate.decide_all(judged, found_tasks), *waiting]


@dataclass(frozen=True)
class Waited:
    verdict: swarmstate.Verdict | None  # None: cancelled
    states: tuple[swarmstate.ServiceState, ...]


def converge(steps: Steps, cwd: Path, project: str, before: Mapping[str, dict[str, Any]],
             limit: float) -> None:
    """Wait for every service of the stack at once; the outcome is one recorded step
    (``swarm wait``): converged, failed with each failing service's reason, or not converged
    within ``limit`` seconds."""
    started = time.monotonic()
    states: list[swarmstate.ServiceState] = []
    while True:
        try:
            now = services(steps.queries, steps.env, cwd, project)
            found = tasks(steps.queries, steps.env, cwd, [str(s.get("ID")) for s in now])
        except (EngineError, ValueError) as exc:
            steps.step("swarm wait", time.monotonic() - started, str(exc))
            return
        states = verdicts(now, found, before)
        verdict = swarmstate.overall(states) if states else "converged"
        elapsed = time.monotonic() - started
        if verdict == "converged":
            steps.step("swarm wait", elapsed)
            return
        if verdict == "failed":
            bad = "; ".join(f"{short(s.service, project)}: {s.reason}" for s in states
                            if s.verdict == "failed")
            steps.step("swarm wait", elapsed, f"not converged: {bad}")
            return
        if elapsed >= limit:
            late = "; ".join(f"{short(s.service, project)}: {s.reason}" for s in states
                             if s.verdict != "converged")
            steps.step("swarm wait", elapsed,
                       f"not converged within {limit:g}s ({WAIT_KEY}): {late}")
            return
        if steps.cancelled():
            return
        time.sleep(POLL)


def leftovers(runner: Runner, env: Mapping[str, str], cwd: Path, project: str) -> str:
    """What of a removed stack the manager still lists ("" when nothing): services,
    networks, and tasks on any node (a network goes only after its tasks' containers)."""
    label = f"label={NAMESPACE_LABEL}={project}"
    left = []
    if ask(runner, env, cwd, "service", "ls", "-q", "--filter", label).split():
        left.append("services")
    if ask(runner, env, cwd, "network", "ls", "-q", "--filter", label).split():
        left.append("networks")
    nodes = ask(runner, env, cwd, "node", "ls", "-q").split()
    if nodes and ask(runner, env, cwd, "node", "ps", "-q", "--filter", f"name={project}_",
                     *nodes).split():
        left.append("tasks")
    return ", ".join(left)


def removed(steps: Steps, cwd: Path, project: str, limit: float) -> None:
    """After ``docker stack rm``: wait until nothing of the stack remains, so that an ``up``
    right after finds no network on its way out."""
    started = time.monotonic()
    while True:
        try:
            left = leftovers(steps.queries, steps.env, cwd, project)
        except EngineError as exc:
            steps.step("swarm wait", time.monotonic() - started, str(exc))
            return
        elapsed = time.monotonic() - started
        if not left:
            steps.step("swarm wait", elapsed)
            return
        if elapsed >= limit:
            steps.step("swarm wait", elapsed,
                       f"still listed after {limit:g}s ({WAIT_KEY}): {left}")
            return
        if steps.cancelled():
            return
        time.sleep(POLL)


@dataclass(frozen=True)
class Task:
    container: str
    node_id: str
    hostname: str
    manager: bool  # the task runs on the engine kompose talks to
    name: str = ""  # SERVICE.SLOT (SERVICE.NODE_ID for a global service), as Swarm names it


def running_tasks(runner: Runner, env: Mapping[str, str], cwd: Path, project: str,
                  services: Sequence[str] = ()) -> list[Task]:
    """Every running task of the stack, or of these services (full names), by name, each
    with its node: two questions to the manager, whatever the number of tasks."""
    text = ask(runner, env, cwd, "stack", "ps", "--no-trunc", "--filter",
               "desired-state=running", "--format", "{{.ID}}\t{{.Name}}\t{{.Node}}", project)
    wanted = set(services)
    # A task's name is its service's and one more dotted part (a service name may hold dots).
    rows = [row for row in (line.split("\t") for line in text.splitlines())
            if len(row) == 3 and (not wanted or row[1].rpartition(".")[0] in wanted)]
    if not rows:
        return []
    found = {str(t.get("ID")): t for t in _json_list(
        ask(runner, env, cwd, "inspect", "--type", "task", *(r[0] for r in rows)))}
    own = ask(runner, env, cwd, "info", "--format", "{{.Swarm.NodeID}}").strip()
    out = []
    for task_id, name, hostname in rows:
        task = found.get(task_id) or {}
        status = task.get("Status") or {}
        if status.get("State") != "running":
            continue
        node_id = str(task.get("NodeID") or "")
        out.append(Task(str((status.get("ContainerStatus") or {}).get("ContainerID") or ""),
                        node_id, hostname, node_id == own, name))
    return sorted(out, key=lambda t: t.name)


def running_task(runner: Runner, env: Mapping[str, str], cwd: Path, service: str,
                 index: int | None) -> Task:
    """The running task of ``service`` (the one in slot ``index`` when given) and its node."""
    ids = ask(runner, env, cwd, "service", "ps", "-q", "--no-trunc", "--filter",
              "desired-state=running", service).split()
    found = [t for t in (_json_list(ask(runner, env, cwd, "inspect", "--type", "task", *ids))
                         if ids else [])
             if (t.get("Status") or {}).get("State") == "running"]
    if index is not None:
        found = [t for t in found if t.get("Slot") == index]
    if not found:
        raise EngineError(f"service {service} has no running task"
                          + (f" in slot {index}" if index is not None else "")
                          + last_node(runner, env, cwd, tasks(runner, env, cwd, [service])))
    task = sorted(found, key=lambda t: int(t.get("Slot") or 0))[0]
    node_id = str(task.get("NodeID") or "")
    own = ask(runner, env, cwd, "info", "--format", "{{.Swarm.NodeID}}").strip()
    hostname = ask(runner, env, cwd, "node", "inspect", "--format",
                   "{{.Description.Hostname}}", node_id).strip()
    container = str(((task.get("Status") or {}).get("ContainerStatus") or {})
                    .get("ContainerID") or "")
    return Task(container, node_id, hostname, node_id == own)


def last_node(runner: Runner, env: Mapping[str, str], cwd: Path,
              found: Sequence[dict[str, Any]]) -> str:
    """Where the newest placed of these tasks ran, when that node is not Ready (its engine
    stopped or cut off: what a user must look at), else ""."""
    placed = [t for t in found if t.get("NodeID")]
    if not placed:
        return ""
    last = max(placed, key=lambda t: str((t.get("Status") or {}).get("Timestamp", "")))
    try:
        host, _, state = ask(runner, env, cwd, "node", "inspect", "--format",
                             "{{.Description.Hostname}} {{.Status.State}}",
                             str(last["NodeID"])).strip().partition(" ")
    except EngineError:
        return ""
    return f" (its last task ran on node {host}, which is {state})" \
        if state and state != "ready" else ""


# -- --status: one listing per engine -----------------------------------------------------
@dataclass(frozen=True)
class Listing:
    services: tuple[dict[str, Any], ...]  # service inspect
    running: dict[str, int]  # service ID -> running tasks
    nodes: dict[str, tuple[str, ...]]  # service ID -> hostnames of its running tasks
    error: str = ""


_listings: dict[tuple[str, ...], Listing] = {}
_listing_locks: dict[tuple[str, ...], threading.Lock] = {}
_guard = threading.Lock()


def engine_listing(runner: Runner, env: Mapping[str, str], cwd: Path) -> Listing:
    """Every service and running task of the engine, asked once per engine and kompose run
    however many stacks share it (``--status`` of many stacks costs the same calls as one)."""
    key = (env.get("DOCKER_HOST", ""), env.get("DOCKER_CONTEXT", ""),
           env.get("DOCKER_CONFIG", ""))
    with _guard:
        lock = _listing_locks.setdefault(key, threading.Lock())
    with lock:
        if key not in _listings:
            _listings[key] = _list_engine(runner, env, cwd)
        return _listings[key]


def _list_engine(runner: Runner, env: Mapping[str, str], cwd: Path) -> Listing:
    try:
        ids = ask(runner, env, cwd, "service", "ls", "-q").split()
        found = _json_list(ask(runner, env, cwd, "service", "inspect", *ids)) if ids else []
        nodes = ask(runner, env, cwd, "node", "ls", "--format", "{{.ID}} {{.Hostname}}")
        hostnames = dict(line.split(" ", 1) for line in nodes.splitlines() if " " in line)
        running: dict[str, int] = {}
        placed: dict[str, list[str]] = {}
        if hostnames:
            text = ask(runner, env, cwd, "node", "ps", "--filter", "desired-state=running",
                       "--no-trunc", "--format", "{{.ID}}", *hostnames)
            task_ids = sorted(set(text.split()))
            for t in _json_list(ask(runner, env, cwd, "inspect", "--type", "task",
                                    *task_ids)) if task_ids else []:
                if (t.get("Status") or {}).get("State") != "running":
                    continue
                sid = str(t.get("ServiceID"))
                running[sid] = running.get(sid, 0) + 1
                host = hostnames.get(str(t.get("NodeID")), str(t.get("NodeID")))
                if host not in placed.setdefault(sid, []):
                    placed[sid].append(host)
    except (EngineError, ValueError) as exc:
        return Listing((), {}, {}, str(exc))
    return Listing(tuple(found), running, {k: tuple(sorted(v)) for k, v in placed.items()})


def details(listing: Listing, project: str) -> list[ServiceDetail]:
    out = []
    for s in listing.services:
        spec = s.get("Spec") or {}
        if (spec.get("Labels") or {}).get(NAMESPACE_LABEL) != project:
            continue
        sid = str(s.get("ID"))
        mode = spec.get("Mode") or {}
        running = listing.running.get(sid, 0)
        desired = int((mode.get("Replicated") or {}).get("Replicas", 1)) \
            if "Replicated" in mode else max(running, 1)
        out.append(ServiceDetail(short(str(spec.get("Name") or sid), project), running,
                                 desired, listing.nodes.get(sid, ()),
                                 str((s.get("UpdateStatus") or {}).get("State") or "")))
    return sorted(out, key=lambda d: d.service)


def forget() -> None:
    """Drop the remembered listings (tests run several kompose calls in one process)."""
    with _guard:
        _listings.clear()

