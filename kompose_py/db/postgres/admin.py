"""Administrative SQL (create, rename, drop, settings) for both ways of reaching PostgreSQL.

Statements are built with ``psycopg.sql`` (identifiers and literals always quoted by it) and
run either through a psycopg connection from the host or through psql inside the database's
container: one long-lived ``docker exec -i psql`` per command, fed statements on stdin, each
followed by an ``\\echo`` of a marker of its own; the marker comes back only once psql has
finished the statement (a swap's COMMIT included), so each step is a finished fact before the
journal moves on. psql runs with ON_ERROR_STOP: a failed statement ends the session with its
error line on stderr (a StepError); the next statement starts a new session. Every session
sets ``lock_timeout``: a statement that would wait on another transaction's lock gives up
after LOCK_TIMEOUT instead of waiting without bound while the target refuses connections.

This module imports psycopg at the top; it is imported only by commands that run SQL.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Protocol

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from kompose_py.db.settings import DbSettings
from kompose_py.errors import StepError
from kompose_py.runner.command import Command, failure_line
from kompose_py.runner.run import Runner


class ToolAccess(Protocol):
    """What the container admin needs of an access: its settings, where it is, and the psql
    command it would run (db/reach.py's ContainerAccess)."""

    @property
    def db(self) -> DbSettings: ...

    def describe(self) -> str: ...

    def tool(self, program: str, database: str, extra: Sequence[str], env: Mapping[str, str],
             cwd: Path, *, stdin: bool = False, tty: bool = False) -> Command: ...


def lock_timeout() -> str:
    """How long one administrative statement waits for a lock (KOMPOSE_DB_LOCK_TIMEOUT
    seconds, default 10)."""
    try:
        seconds = float(os.environ.get("KOMPOSE_DB_LOCK_TIMEOUT") or 10)
    except ValueError:
        seconds = 10.0
    return f"{max(seconds, 0.1) * 1000:.0f}ms"


def first_line(exc: BaseException) -> str:
    """A library error's message in one line."""
    return failure_line(str(exc).strip().splitlines()[:1], type(exc).__name__)


def render(statement: sql.Composable) -> str:
    return statement.as_string(None)


class PsycopgAdmin:
    def __init__(self, db: DbSettings, report: Callable[[str], None]) -> None:
        self._report = report
        try:
            self.conn = psycopg.connect(
                host=db.host, port=db.port, user=db.user or None, password=db.password,
                dbname=db.maintenance_db, connect_timeout=10, autocommit=True,
                application_name="kompose", row_factory=dict_row)
            self.conn.execute(sql.SQL("SET lock_timeout = {}").format(
                sql.Literal(lock_timeout())))
        except psycopg.Error as exc:
            raise StepError(f"cannot connect to {db.where}: {first_line(exc)}") from None

    def query(self, statement: Any) -> list[dict[str, Any]]:
        try:
            return list(self.conn.execute(statement).fetchall())
        except psycopg.Error as exc:
            raise StepError(first_line(exc)) from None

    def execute(self, statement: Any) -> None:
        self._report("SQL: " + statement.as_string(self.conn))
        try:
            self.conn.execute(statement)
        except psycopg.Error as exc:
            if self.conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
                # A failed BEGIN ... COMMIT (the swap) leaves the session in the aborted
                # transaction: end it, so the next statement (putting things back) runs.
                with contextlib.suppress(psycopg.Error):
                    self.conn.execute("ROLLBACK")
            raise StepError(first_line(exc)) from None

    def close(self) -> None:
        self.conn.close()


class _Session:
    """One ``docker exec -i psql`` fed statements one at a time (see the module's docstring).
    Runs through the runner in a thread of its own; shielded: Ctrl-C does not end a statement
    half-way, the command ends the session when it stops."""

    ANSWER_WAIT = 600.0  # seconds for one statement, as the short sessions had

    def __init__(self, cmd: Command, runner: Runner) -> None:
        self._marker = f"kompose-done-{os.urandom(8).hex()}"
        self._count = 0
        self._inbox: queue.Queue[bytes | None] = queue.Queue()
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        self._kill = False
        self.outcome: Any = None
        self._thread = threading.Thread(target=self._run, args=(cmd, runner), daemon=True)
        self._thread.start()

    def _run(self, cmd: Command, runner: Runner) -> None:
        from dataclasses import replace

        self.outcome = runner.run(replace(
            cmd, stdout="capture", capture_stderr=True, echo_stderr=False, shielded=True,
            feeder=self._feed, drain=self._drain, timeout=None))
        self._lines.put(None)

    def _feed(self, sink: IO[bytes]) -> None:
        while (item := self._inbox.get()) is not None:
            sink.write(item)
            sink.flush()
        if self._kill:
            raise StepError("psql did not answer in time")

    def _drain(self, source: IO[bytes]) -> None:
        try:
            for line in iter(source.readline, b""):
                self._lines.put(line)
        finally:
            self._inbox.put(None)  # psql is gone: the feeder stops waiting

    def run(self, text: str) -> bytes:
        """psql's output for ``text``; StepError with psql's error line when it failed (the
        session is then over)."""
        self._count += 1
        done = f"{self._marker}-{self._count}"
        self._inbox.put(f"{text};\n\\echo {done}\n".encode())
        out: list[bytes] = []
        while True:
            try:
                line = self._lines.get(timeout=self.ANSWER_WAIT)
            except queue.Empty:
                self._kill = True
                self._inbox.put(None)
                self._thread.join()
                raise StepError(f"psql gave no answer in {self.ANSWER_WAIT:.0f}s") from None
            if line is None:
                break
            if line.rstrip(b"\n").decode(errors="replace") == done:
                return b"".join(out)
            out.append(line)
        self._thread.join()
        outcome = self.outcome
        raise StepError(failure_line(outcome.stderr_tail,
                                     outcome.error or f"psql exited {outcome.exit_code}",
                                     strip_marker=True))

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        self._inbox.put(None)  # end of input: psql exits
        self._thread.join(timeout=60)


class ContainerAdmin:
    """psql in the database's container: one session for all the statements of one command
    (a new one after a statement failed)."""

    def __init__(self, access: ToolAccess, runner: Runner, env: Mapping[str, str],
                 cwd: Path, report: Callable[[str], None]) -> None:
        self.access, self.runner, self.env, self.cwd = access, runner, env, cwd
        self._report = report
        self._session: _Session | None = None
        # The first call doubles as the connection check: one clear line when it fails.
        try:
            self.query(sql.SQL("SELECT 1 AS ok"))
        except StepError as exc:
            raise StepError(f"cannot connect to {access.db.user or 'the server'} in "
                            f"{access.describe()}: {exc.message}") from None

    def _psql(self, text: str) -> bytes:
        if self._session is None or not self._session.alive:
            cmd = self.access.tool("psql", self.access.db.maintenance_db,
                                   ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"],
                                   self.env, self.cwd, stdin=True)
            self._session = _Session(cmd, self.runner)
            try:
                self._session.run(f"SET lock_timeout = '{lock_timeout()}'")
            except StepError:
                self._session = None
                raise
        try:
            return self._session.run(text)
        except StepError:
            self._session = None
            raise

    def query(self, statement: Any) -> list[dict[str, Any]]:
        wrapped = sql.SQL("SELECT coalesce(jsonb_agg(to_jsonb(q)), '[]') FROM ({}) q").format(
            statement)
        out = self._psql(render(wrapped)).decode(errors="replace").strip()
        try:
            rows = json.loads(out.splitlines()[-1] if out else "[]")
        except ValueError:
            raise StepError(f"unexpected answer from psql: {out[:200]!r}") from None
        return list(rows)

    def execute(self, statement: Any) -> None:
        text = render(statement)
        self._report("SQL: " + text)
        self._psql(text)

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None


def _write(sink: IO[bytes], data: bytes) -> None:
    sink.write(data)


class PlanAdmin:
    """Dry-run: says which SQL would run, runs none, connects to nothing."""

    def __init__(self, report: Callable[[str], None]) -> None:
        self._report = report

    def query(self, statement: Any) -> list[dict[str, Any]]:
        return []

    def execute(self, statement: Any) -> None:
        self._report("SQL: " + render(statement) + "  would run")

    def close(self) -> None:
        pass
