"""The process tree, read from /proc: a command's whole family (its group, its session, its
descendants wherever they moved, and what carries its call id), signalled once each, and ended
with a grace period. Used by the supervisor (cancellation) and the runner (time-outs)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping

KILL_GRACE_SECONDS = 5.0


# Every hook call carries a unique value of this variable, inherited by everything it starts:
# what a hook left running outside its process group and session (`set -m`, `setsid`, a
# double fork) is found by it after a time-out or a cancellation.
CALL_ID = "KOMPOSE_CALL_ID"


def kill_grace() -> float:
    """Seconds between SIGTERM and SIGKILL for a group that has to end: KOMPOSE_KILL_GRACE
    (tests set it short), else 5."""
    try:
        value = float(os.environ.get("KOMPOSE_KILL_GRACE") or KILL_GRACE_SECONDS)
    except ValueError:
        return KILL_GRACE_SECONDS
    return value if value >= 0 else KILL_GRACE_SECONDS


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


# pid -> (parent, process group, session, start time); live processes only (no zombies).
ProcessTable = dict[int, tuple[int, int, int, int]]


def _process_table() -> ProcessTable:
    """Every live process, from /proc (empty where there is no /proc: then only process
    groups are followed)."""
    table: ProcessTable = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return table
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stream:
                data = stream.read()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp session ... starttime": comm may hold spaces and ")".
        fields = data[data.rfind(b")") + 2:].split()
        if len(fields) < 20 or fields[0] in (b"Z", b"X"):
            continue  # a zombie needs no signal, only its parent's wait
        table[int(name)] = (int(fields[1]), int(fields[2]), int(fields[3]), int(fields[19]))
    return table


def _carries(pid: int, call_id: str) -> bool:
    """Whether the process's environment holds this call's id."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as stream:
            environ = stream.read()
    except OSError:
        return False
    return f"\0{CALL_ID}={call_id}\0".encode() in b"\0" + environ


def _family(leader: int, call_id: str | None, table: ProcessTable) -> dict[int, int]:
    """The processes that belong to the command led by ``leader`` (pid -> start time): its
    process group and session, every descendant (whatever group or session it moved to),
    and every process that carries its call id (descendants whose parent already ended)."""
    found = {pid: info[3] for pid, info in table.items()
             if pid == leader or info[1] == leader or info[2] == leader}
    if call_id is not None:
        found.update({pid: info[3] for pid, info in table.items()
                      if pid not in found and _carries(pid, call_id)})
    children: dict[int, list[int]] = {}
    for pid, info in table.items():
        children.setdefault(info[0], []).append(pid)
    todo = list(found)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found[child] = table[child][3]
                todo.append(child)
    found.pop(os.getpid(), None)
    return found


def _signal_family(pgid: int, members: Mapping[int, int], table: ProcessTable,
                   sig: int) -> None:
    """The signal once to every member: the group by killpg, the members outside it one by
    one. (Twice to one process would be two Ctrl-Cs to a hook that traps the first.)"""
    for pid in members:
        if table.get(pid, (0, 0))[1] != pgid:
            _kill(pid, sig)
    _killpg(pgid, sig)


def _end_group(proc: subprocess.Popen[bytes], call_id: str | None = None) -> None:
    """SIGTERM to the child's whole family (its group, its session, its descendants, what
    carries its call id), a grace period, then SIGKILL to whatever is left."""
    pgid = proc.pid
    grace = kill_grace()
    table = _process_table()
    members = _family(pgid, call_id, table)
    _signal_family(pgid, members, table, signal.SIGTERM)
    deadline = time.monotonic() + grace
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    while True:
        table = _process_table()
        # Still there: the same process (pid and start time), not a new one on a reused pid;
        # and whatever the family started meanwhile.
        left = {pid for pid, start in members.items() if pid in table and table[pid][3] == start}
        left.update(_family(pgid, call_id, table))
        if not left and not (table == {} and _group_alive(pgid)):
            break
        if time.monotonic() >= deadline:
            for pid in left:
                _kill(pid, signal.SIGKILL)
            _killpg(pgid, signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True

