"""One import per database across machines: a PostgreSQL advisory lock held by a session of
the import's own for as long as the import runs.

The stack-folder lock (lock.py) keeps two kompose processes of one host apart; two hosts that
deploy the same stacks (or a cluster's database reached from two managers) share only the
server. So the import also takes ``pg_try_advisory_lock(<kompose>, <database>)`` in a psql
session opened the way the import reaches the server (host tools, ``docker exec``, or a
one-off client container on a swarm network) and kept open by holding its stdin; closing
stdin ends the session and the server releases the lock. A kompose that dies loses its
session, so a crash never leaves the lock behind.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import IO, TypeVar

from kompose_py.db.reach import AccessKind, access_for
from kompose_py.errors import StepError
from kompose_py.lifecycle import StackRun
from kompose_py.runner.command import Outcome

ANSWER_TIMEOUT = 60.0  # seconds to wait for the server to say whether the lock is free
_T = TypeVar("_T")


def _query(database: str) -> bytes:
    # hashtext: the same two keys on every machine; the literal is the database name only.
    name = database.replace("'", "''")
    return (f"SELECT CASE WHEN pg_try_advisory_lock(hashtext('kompose-import'), "
            f"hashtext('{name}')) THEN 'kompose-lock:held' ELSE 'kompose-lock:busy' END;\n"
            ).encode()


@contextlib.contextmanager
def held(run: StackRun, access: AccessKind) -> Iterator[Callable[[], None]]:
    """The advisory lock of ``access.db.name``, asked for at once and kept for the block. The
    block gets ``confirm``, to call before it changes anything: it waits for the server's
    answer (read-only work such as opening the admin session goes on meanwhile) and raises
    StepError when another session (another kompose, on any machine) holds the lock."""
    if run.ctx.dry_run:
        run.note(f"would hold the advisory lock of {access.db.name} on the server (one import "
                 "per database across machines)")
        yield lambda: None
        return
    answered = threading.Event()
    release = threading.Event()
    answer: list[str] = []
    outcome: list[Outcome] = []

    def feed(sink: IO[bytes]) -> None:
        sink.write(_query(access.db.name))
        sink.flush()
        release.wait()  # the session, and the lock, last until stdin closes

    def drain(source: IO[bytes]) -> None:
        for raw in iter(source.readline, b""):
            line = raw.decode(errors="replace").strip()
            if line.startswith("kompose-lock:") and not answer:
                answer.append(line.removeprefix("kompose-lock:"))
                answered.set()
        # psql has ended (it could not connect, or its session was lost): stop holding.
        release.set()
        answered.set()

    cmd = access.tool("psql", access.db.maintenance_db, ["-X", "-q", "-A", "-t"], run.env,
                      run.stack.path, stdin=True)
    # Shielded: a signal must not drop the lock while a swap it protects is finishing.
    cmd = replace(cmd, stdout="capture", capture_stderr=True, echo_stderr=False,
                  feeder=feed, drain=drain, shielded=True)

    def hold() -> None:
        try:
            outcome.append(run.ctx.runner.run(cmd))
        finally:
            answered.set()

    def confirm() -> None:
        answered.wait(ANSWER_TIMEOUT)
        if answer == ["busy"]:
            raise StepError(f"another import of {access.db.name} is running (its advisory "
                            "lock is held by another session, maybe on another machine)",
                            hint="wait for it to finish")
        if answer != ["held"]:
            # The server did not answer (unreachable, refused): the import itself then fails
            # with its own, more telling words; there is nothing to keep apart.
            release.set()
            holder.join(ANSWER_TIMEOUT)
            why = outcome[0].reason if outcome else f"no answer in {ANSWER_TIMEOUT:g}s"
            run.note(f"advisory lock of {access.db.name} not taken: {why}")

    holder = threading.Thread(target=hold, name=f"dblock-{run.stack.name}", daemon=True)
    holder.start()
    try:
        yield confirm
    finally:
        release.set()
        holder.join(ANSWER_TIMEOUT)


def locked_import(run: StackRun,
                  replace_target: Callable[[AccessKind, Callable[[], None]], _T]) -> _T:
    """``replace_target(access, confirm)`` under the database's advisory lock (restore.py's
    import): ``confirm()`` before the first change, see :func:`held`."""
    access = access_for(run.ctx, run.stack, run.env)
    with held(run, access) as confirm:
        return replace_target(access, confirm)
