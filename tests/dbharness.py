"""What the tests of kompose's database safety share: forcing states with ordinary PostgreSQL
locks held by another session (never sleeps), polling the import journal, and the SIGKILL-mid-
swap drill (kill kompose while its statement waits at a chosen step, then check that the next
command puts things right), for any server the test can reach with psycopg: the host's, one in
a container, or a swarm service's task on a worker (through its host-mode published port)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from kompose_py.db.journal import JOURNAL_NAME
from kompose_py.db.postgres.catalog import scratch_names
from tests.conftest import Postgres, Result, run_kompose

T = TypeVar("T")


def kompose(root: Path, *args: str, env: dict[str, str] | None = None,
            timeout: float = 180) -> Result:
    return run_kompose("--root", str(root), *args, env=env, timeout=timeout)


def dump_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()
                  if ".sql" in p.name and not p.name.endswith(".json"))  # not manifests


def wait_for(what: str, probe: Callable[[], T | None], limit: float = 90) -> T:
    """Poll until ``probe`` answers; a deadline only so that a broken test cannot hang."""
    deadline = time.monotonic() + limit
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.02)


def journal(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / JOURNAL_NAME).read_text())
    except (FileNotFoundError, ValueError):
        return None


def leftovers(pg: Postgres, name: str) -> set[str]:
    stem = scratch_names(name, "0" * 8)[0].rsplit("_kompose_new_", 1)[0]
    return {d for d in pg.databases()
            if re.fullmatch(re.escape(stem) + r"_kompose_(new|old)_[0-9a-f]{8}", d)}


def catalog(pg: Postgres, name: str) -> dict[str, Any] | None:
    with pg.connect() as conn:
        row = conn.execute("SELECT datallowconn, datconnlimit FROM pg_database "
                           "WHERE datname = %s", (name,)).fetchone()
    return None if row is None else {"datallowconn": row[0], "datconnlimit": row[1]}


def blocked(pg: Postgres, fragment: str) -> list[int]:
    """Backends (kompose's) whose statement mentions ``fragment`` and waits for a lock."""
    with pg.connect() as conn:
        return [r[0] for r in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND "
            "pid <> pg_backend_pid() AND strpos(query, %s) > 0", (fragment,))]


def settle(pg: Postgres, fragment: str) -> None:
    """Wait until no other session is still running a statement that mentions
    ``fragment`` (an orphaned statement of a killed kompose finishes or fails first)."""
    def quiet() -> bool:
        with pg.connect() as conn:
            return not conn.execute(
                "SELECT 1 FROM pg_stat_activity WHERE state = 'active' AND "
                "pid <> pg_backend_pid() AND strpos(query, %s) > 0", (fragment,)).fetchall()
    wait_for(f"no statement on {fragment} running", quiet)


def terminate(pg: Postgres, pids: list[int]) -> None:
    with pg.connect() as conn:
        for pid in pids:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))


class Holder:
    """Another session holding a lock in an open transaction, as an admin's half-finished
    GRANT or COMMENT would."""

    def __init__(self, pg: Postgres, statement: Any) -> None:
        self.conn = pg.connect()
        self.conn.execute("BEGIN")
        self.conn.execute(statement)

    def release(self) -> None:
        if not self.conn.closed:
            with contextlib.suppress(Exception):
                self.conn.execute("ROLLBACK")
            self.conn.close()


def row_lock(pg: Postgres, name: str) -> Holder:
    """A row lock on ``name``'s pg_database entry (an open GRANT): blocks every ALTER."""
    from psycopg import sql

    return Holder(pg, sql.SQL("GRANT CONNECT ON DATABASE {} TO PUBLIC").format(
        sql.Identifier(name)))


def object_lock(pg: Postgres, name: str) -> Holder:
    """The database object's lock (an open COMMENT): blocks RENAME and DROP only."""
    from psycopg import sql

    return Holder(pg, sql.SQL("COMMENT ON DATABASE {} IS 'held by a test'").format(
        sql.Identifier(name)))


def start(root: Path, *args: str, env: dict[str, str] | None = None,
          logs: Path | None = None) -> tuple[subprocess.Popen[bytes], Path]:
    logs = logs or root.parent / f"kompose-{uuid.uuid4().hex[:6]}"
    with open(f"{logs}.out", "wb") as out, open(f"{logs}.err", "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "kompose_py", "--root", str(root),
                                 *args], stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                env={**os.environ, **(env or {})}, start_new_session=True)
    return proc, logs


def output(logs: Path) -> str:
    return Path(f"{logs}.out").read_text() + Path(f"{logs}.err").read_text()


def phase_is(folder: Path, proc: subprocess.Popen[bytes], *phases: str
             ) -> Callable[[], dict[str, Any] | None]:
    def probe() -> dict[str, Any] | None:
        assert proc.poll() is None, f"kompose ended early ({proc.returncode})"
        data = journal(folder)
        return data if data and data["phase"] in phases else None
    return probe


def summary_line(text: str, stack: str) -> str:
    """The last line that gives ``stack``'s outcome (the summary's, when it lists it)."""
    lines = [x for x in text.splitlines()
             if re.match(rf"\s*[✗✓⊘] {re.escape(stack)}\b", x)]
    assert lines, text
    return lines[-1]


# Long enough for any blocked statement to be waiting when the test kills kompose.
WAIT_LONG = {"KOMPOSE_DB_LOCK_TIMEOUT": "300"}


def sleeping(pg: Postgres, database: str) -> bool:
    with pg.connect() as conn:
        return bool(conn.execute("SELECT 1 FROM pg_stat_activity WHERE datname = %s AND "
                                 "wait_event = 'PgSleep'", (database,)).fetchall())


# -- SIGKILL mid-swap ------------------------------------------------------------------------
# (point, what the orphaned statement of the killed kompose does afterwards: "done" it
# completes once the lock is released, "cut" its session is ended before that). Both renames
# run in one transaction ("swap"): killed while it waits at the first rename ("swap") or at
# the second ("swap-second"), the target's name still names one complete database, the old
# or the new one, and never goes missing.
KILL_CASES = [("load", ""), ("connections-off", "done"), ("swap", "done"), ("swap", "cut"),
              ("swap-second", "done"), ("swap-second", "cut")]


@dataclass(frozen=True)
class Killed:
    """What a kill left: the journal as kompose last wrote it, its output, and what the next
    command must say it found."""

    phase: str  # the journal's step (``swap`` for both renames)
    data: dict[str, Any]
    logs: Path
    state: str

    @property
    def swapped(self) -> bool:
        return self.state.startswith("the import had completed")


REFUSED = "is in place with new connections refused"


def kill_mid_swap(pg: Postgres, root: Path, stack: str, name: str, point: str,
                  orphan: str) -> Killed:
    """Start ``db:import`` of ``stack`` (database ``name`` on ``pg``, one dump of it in the
    stack folder), hold it at ``point`` with another session's lock, SIGKILL it there, let
    its orphaned statement finish or cut it, and check the target's name answered throughout."""
    phase = "swap" if point == "swap-second" else point
    folder = root / stack
    args = [stack, "db:import"]
    if point == "load":
        # A dump that is still loading when kompose dies (its psql sleeps in the scratch DB).
        (dump,) = dump_files(folder)
        text = (folder / dump).read_text()
        cut = text.index("-- PostgreSQL database dump complete")
        (folder / "sleepy.sql").write_text(text[:cut] + "SELECT pg_sleep(3600);\n"
                                           + text[cut - 4:])
        args.append(str(folder / "sleepy.sql"))
    held: list[Holder] = []
    pids: list[int] = []
    if point in ("connections-off", "swap-second"):
        held.append(row_lock(pg, name))  # kompose waits at "connections off"
    if point == "swap":
        held.append(object_lock(pg, name))  # connections go off, the first rename waits
    proc, logs = start(root, *args, env=WAIT_LONG)
    try:
        if point == "load":
            data = wait_for("psql sleeping in the scratch DB", lambda: (
                (j := phase_is(folder, proc, "load")()) and sleeping(pg, j["scratch"]) and j))
        else:
            data = wait_for("kompose at connections-off or later",
                            phase_is(folder, proc, "connections-off", "swap"))
            waits_on = name
            if point == "swap-second":
                # Hold the scratch DB's rename, then let the swap go on until it waits there,
                # its first rename done inside the transaction.
                held.append(object_lock(pg, data["scratch"]))
                held.pop(0).release()
                data = wait_for("kompose at swap", phase_is(folder, proc, "swap"))
                waits_on = data["scratch"]
            else:
                data = wait_for(f"kompose at {phase}", phase_is(folder, proc, phase))
            pids = wait_for("kompose's statement waiting for the lock",
                            lambda: blocked(pg, waits_on))
            # Killed while it waits: whatever point, the target's name answers now.
            assert name in pg.databases()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        if orphan == "cut":
            terminate(pg, pids)
    finally:
        for holder in held:
            holder.release()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
    if point != "load":
        settle(pg, name)
    scratch, aside = data["scratch"], data["aside"]
    completed = f"the import had completed; dropping the replaced copy {aside}"
    state = {
        ("load", ""): f"state: dropping the scratch database {scratch}",
        ("connections-off", "done"): REFUSED,
        ("swap", "done"): completed, ("swap", "cut"): REFUSED,
        ("swap-second", "done"): completed, ("swap-second", "cut"): REFUSED,
    }[(point, orphan)]
    assert name in pg.databases()  # never missing, whatever was killed when
    if state == REFUSED:
        info = catalog(pg, name)
        assert info is not None and info["datallowconn"] is False
    assert journal(folder) is not None, output(logs)
    return Killed(phase, data, logs, state)


def put_right(pg: Postgres, root: Path, stack: str, name: str, killed: Killed,
              next_command: str, rows: tuple[int, int], dumps_before: int) -> None:
    """Listings say what the kill left; ``next_command`` puts it right and does its job.
    ``rows``: the target's rows before the import and in the dump."""
    listed = kompose(root, "--list")
    assert listed.code == 0 and "INTERRUPTED IMPORT" in listed.out, listed.all
    dbl = kompose(root, stack, "db:list")
    assert f"interrupted import of {name} (step {killed.phase}" in dbl.out, dbl.all
    assert "db:recover" in dbl.out
    r = kompose(root, stack, next_command)
    assert r.code == 0, r.all
    assert f"an import of {name} was interrupted at step {killed.phase!r}" in r.err, r.err
    assert killed.state in r.err, r.err
    assert "Traceback" not in r.all
    info = catalog(pg, name)
    assert info is not None and info["datallowconn"] is True
    assert leftovers(pg, name) == set(), pg.databases()
    assert journal(root / stack) is None
    live, dumped = rows
    expected = dumped if next_command == "db:import" or killed.swapped else live
    assert len(pg.rows(name)) == expected
    with pg.connect(name) as conn:  # it accepts connections
        conn.execute("SELECT 1")
    if next_command == "db:export":
        assert len(dump_files(root / stack)) == dumps_before + 1
    assert "INTERRUPTED" not in kompose(root, "--list").out
