"""Decide from what the manager reports whether a Swarm service has converged, is still on its
way, or has failed -- for all services of a stack at once, so a caller can poll them together.

Inputs are the JSON the docker CLI prints: `docker service inspect SVC...` (a list of services)
and `docker inspect TASK...` of their tasks (IDs from `docker service ps -q --no-trunc SVC...`,
which lists the task history too). Verified on CLI 28.2 / engine 20.10 (API 1.41):

- `docker stack deploy` exits 0 after a failed update that `failure_action: rollback` undid; only
  `UpdateStatus.State` tells (`rollback_started`, then `rollback_completed`). During
  `rollback_started` the spec has already reverted, so "spec equals the old one" is no success.
- A first deploy of a crashing service has no `UpdateStatus`; its tasks end `failed` with
  `Status.Err = "task: non-zero exit (1)"` and are replaced about every 5 s, forever.
- A placement nobody meets leaves one task `pending` with
  `Status.Err = "no suitable node (scheduling constraints not satisfied on 3 nodes)"`.
- A task with a healthcheck stays `starting` until healthy; `running` means healthy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

Verdict = Literal["converged", "pending", "failed"]

FAILED_UPDATE_STATES = frozenset(
    {"paused", "rollback_started", "rollback_paused", "rollback_completed"}
)
_EXIT = re.compile(r"^task: non-zero exit \((\d+)\)$")


@dataclass(frozen=True)
class ServiceState:
    service: str
    verdict: Verdict
    reason: str  # one line; "" when converged
    running: int
    desired: int


def _when(stamp: str | None) -> datetime | None:
    if not stamp:
        return None
    # Docker writes nanoseconds; datetime takes microseconds
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", stamp)
    if not m:
        return None
    # Python 3.10 takes exactly 3 or 6 fraction digits
    frac = "." + (m.group(2) or ".")[1:7].ljust(6, "0")
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    return datetime.fromisoformat(m.group(1) + frac + zone)


def task_error(task: dict[str, Any]) -> str:
    """The task's error as a person would say it: `task exited 1`, `No such image: x`."""
    status = task.get("Status") or {}
    err = str(status.get("Err") or "")
    m = _EXIT.match(err)
    if m:
        return f"task exited {m.group(1)}"
    return err or str(status.get("Message") or status.get("State") or "")


# Fields the manager fills with defaults in `service inspect` but leaves out of a task's spec.
_DEFAULTED = frozenset({"StopGracePeriod", "RestartPolicy", "Delay", "Runtime"})


def _same(task: Any, template: Any) -> bool:
    """A task's spec equals the template it was made from, allowing for left-out defaults
    (an absent key on one side matches an empty value, or a defaulted field, on the other)."""
    if isinstance(task, dict) and isinstance(template, dict):
        for key in task.keys() | template.keys():
            if key in task and key in template:
                if not _same(task[key], template[key]):
                    return False
            elif key not in _DEFAULTED and (task.get(key) or template.get(key)):
                return False
        return True
    return bool(task == template)


def _current(service: dict[str, Any], tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # A task carries the TaskTemplate it was made from: equal means "of the current spec".
    template = (service.get("Spec") or {}).get("TaskTemplate")
    return [t for t in tasks if _same(t.get("Spec"), template)]


def _newest(tasks: list[dict[str, Any]]) -> dict[str, Any] | None:
    return max(tasks, key=lambda t: str((t.get("Status") or {}).get("Timestamp", "")), default=None)


def decide(
    service: dict[str, Any],
    tasks: list[dict[str, Any]],
    *,
    failures: int = 3,
    since: str | None = None,
    global_desired: int | None = None,
) -> ServiceState:
    """`tasks`: this service's tasks (any state, any age). `failures`: how many failed tasks of
    the current spec make a service failed rather than pending. `since`: when the caller's deploy
    began (RFC 3339); an UpdateStatus older than that belongs to an earlier deploy and is not
    believed yet. `global_desired`: the eligible node count for a global service."""
    spec = service.get("Spec") or {}
    name = str(spec.get("Name") or service.get("ID") or "?")
    mine = [t for t in tasks if t.get("ServiceID") in (None, service.get("ID"))]
    current = _current(service, mine)
    live = [t for t in current if t.get("DesiredState") == "running"]
    running = sum(1 for t in live if (t.get("Status") or {}).get("State") == "running")
    mode = spec.get("Mode") or {}
    if "Replicated" in mode:
        desired = int((mode["Replicated"] or {}).get("Replicas", 1))
    elif "Global" in mode:
        desired = global_desired if global_desired is not None else len(live)
    else:
        return _job(name, mode, current)

    def out(verdict: Verdict, reason: str) -> ServiceState:
        return ServiceState(name, verdict, reason, running, desired)

    failed_tasks = [
        t for t in current if (t.get("Status") or {}).get("State") in ("failed", "rejected")
    ]
    last_failure = _newest(failed_tasks) or _newest(
        [t for t in mine if (t.get("Status") or {}).get("State") in ("failed", "rejected")]
    )
    update = service.get("UpdateStatus") or {}
    state = str(update.get("State") or "")
    started = _when(update.get("StartedAt"))
    begun = _when(since)
    stale = begun is not None and (started is None or started < begun)
    if state and stale and "PreviousSpec" in service:
        return out("pending", "update not started yet")
    if state in FAILED_UPDATE_STATES:
        why = task_error(last_failure) if last_failure else str(update.get("Message") or "")
        return out("failed", f"{state}: {why}" if why else state)
    for t in live:
        err = str((t.get("Status") or {}).get("Err") or "")
        if (t.get("Status") or {}).get("State") == "pending" and err.startswith("no suitable node"):
            return out("failed", err)
    if running < desired and len(failed_tasks) >= failures:
        newest = _newest(failed_tasks)
        return out("failed", f"tasks failing: {task_error(newest) if newest else '?'}")
    if state == "updating":
        return out("pending", f"updating: {running}/{desired} running")
    settled = all((t.get("Status") or {}).get("State") == "running" for t in live)
    if running >= desired and settled:
        return out("converged", "")
    return out("pending", f"{running}/{desired} running")


def _job(name: str, mode: dict[str, Any], current: list[dict[str, Any]]) -> ServiceState:
    job = mode.get("ReplicatedJob") or mode.get("GlobalJob") or {}
    want = int(job.get("TotalCompletions") or 1) if "ReplicatedJob" in mode else len(current)
    done = sum(1 for t in current if (t.get("Status") or {}).get("State") == "complete")
    failed = [t for t in current if (t.get("Status") or {}).get("State") in ("failed", "rejected")]
    if done >= want:
        return ServiceState(name, "converged", "", done, want)
    if failed:
        newest = _newest(failed)
        return ServiceState(
            name, "failed", f"job failed: {task_error(newest) if newest else '?'}", done, want
        )
    return ServiceState(name, "pending", f"{done}/{want} completed", done, want)


def decide_all(
    services: list[dict[str, Any]], tasks: list[dict[str, Any]], **kw: Any
) -> list[ServiceState]:
    """One verdict per service from one `docker service inspect` and one `docker inspect` of
    every task of the stack (tasks are matched to services by ServiceID)."""
    by_service: dict[str, list[dict[str, Any]]] = {}
    for t in tasks:
        by_service.setdefault(str(t.get("ServiceID")), []).append(t)
    return [decide(s, by_service.get(str(s.get("ID")), []), **kw) for s in services]


def overall(states: list[ServiceState]) -> Verdict:
    if any(s.verdict == "failed" for s in states):
        return "failed"
    return "converged" if all(s.verdict == "converged" for s in states) else "pending"
