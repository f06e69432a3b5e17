"""Row counts at pg_dump's own snapshot, and row counts of a restored copy, both ways of
reaching the server.

One SQL session that stays open while other work runs: on the host a psycopg connection;
in container mode a ``psql`` inside the database's container (``docker exec -i``), driven
line by line through its stdin and stdout. Each question is written as one statement
followed by ``\\echo <mark>``; psql answers with one JSON line (the rows, aggregated by the
server, so names with tabs or newlines cannot break the parsing) and then the mark. psql
goes on after a failed statement (no ``ON_ERROR_STOP``): each question's mark line carries
psql's ``ERROR`` and ``LAST_ERROR_MESSAGE``, so a failure is an error of that question.

:class:`SnapshotCounts` (an export): a session opens ``BEGIN ISOLATION LEVEL REPEATABLE
READ, READ ONLY``, exports its snapshot (``pg_export_snapshot()``), hands the id to the
caller for ``pg_dump --snapshot=<id>`` and counts every table pg_dump dumps in that same
transaction, while pg_dump runs; the transaction stays open until pg_dump has ended (it
imports the snapshot at its start, and a snapshot can only be imported while its exporting
transaction lives), then commits. Both read exactly the same data, whatever commits meanwhile.
When the session cannot be opened or no snapshot can be exported, pg_dump still runs without
``--snapshot`` and the counts are "unknown", with the reason. The session sets
``statement_timeout``, ``lock_timeout`` and ``idle_in_transaction_session_timeout`` to 0 for
its transaction, as pg_dump does for its own, and counts inside a savepoint: a counting
statement that fails rolls back to it, and the transaction, with the snapshot pg_dump may
not have imported yet, lives on until pg_dump has ended (an error in the transaction itself
would end the exported snapshot and make such a pg_dump fail with "invalid snapshot
identifier").

:func:`restored_counts` (a verification): the same counting, in a database nobody else uses.
"""

from __future__ import annotations

import contextlib
import json
import queue
import secrets
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import IO, Any, Protocol, TypeVar

from kompose_py.db import manifest as mf
from kompose_py.db.reach import AccessKind, HostAccess
from kompose_py.errors import StepError
from kompose_py.lifecycle import StackRun
from kompose_py.runner.command import failure_line

T = TypeVar("T")


class Channel(Protocol):
    """One open SQL session: statements without results, and rows of ``columns`` values."""

    def execute(self, statement: str) -> None: ...

    def rows(self, query: str, columns: int) -> list[list[Any]]: ...


class _Ended(Exception):
    """The psql session ended (its error is on its stderr)."""


# -- psql in the container, driven over its stdin/stdout -----------------------------------
Answer = tuple[list[str], str | None]  # the lines before the mark; the error, if any


class _PsqlChannel:
    def __init__(self, sink: IO[bytes], answers: queue.Queue[Answer | None],
                 ended: threading.Event, mark: str) -> None:
        self.sink, self.answers, self.ended, self.mark = sink, answers, ended, mark

    def _ask(self, statement: str) -> list[str]:
        if self.ended.is_set():
            raise _Ended
        try:
            # psql's ERROR and LAST_ERROR_MESSAGE (11+) after the mark: a failed statement is
            # a StepError the script may handle, and psql goes on (no ON_ERROR_STOP here).
            self.sink.write(f"{statement};\n\\echo {self.mark} :ERROR "
                            f":LAST_ERROR_MESSAGE\n".encode())
            self.sink.flush()
        except (BrokenPipeError, ValueError):
            raise _Ended from None
        answer = self.answers.get()
        if answer is None:
            raise _Ended
        lines, error = answer
        if error is not None:
            raise StepError(error)
        return lines

    def execute(self, statement: str) -> None:
        self._ask(statement)

    def rows(self, query: str, columns: int) -> list[list[Any]]:
        names = ", ".join(f"c{i}" for i in range(columns))
        wrapped = (f"SELECT coalesce(json_agg(json_build_array({names})), '[]') "
                   f"FROM ({query}) q({names})")
        lines = [line for line in self._ask(wrapped) if line.strip()]
        try:
            data = json.loads(lines[-1]) if lines else None
        except ValueError:
            data = None
        if not isinstance(data, list):
            raise StepError(f"unexpected answer from psql: {' '.join(lines)[:200]!r}")
        return data


def _psql_script(run: StackRun, access: AccessKind, database: str,
                 script: Callable[[Channel], T]) -> T:
    """Run ``script`` against one psql session in ``database`` through ``access``'s tools;
    the session ends when the script returns. StepError (psql's own line) when it fails."""
    answers: queue.Queue[Answer | None] = queue.Queue()
    ended = threading.Event()
    result: list[T] = []
    errors: list[BaseException] = []
    mark = "__kompose_" + secrets.token_hex(8)

    def read(source: IO[bytes]) -> None:
        lines: list[str] = []
        try:
            for raw in iter(source.readline, b""):
                line = raw.decode(errors="replace").rstrip("\n")
                if line.startswith(mark + " "):
                    failed, _, message = line[len(mark) + 1:].partition(" ")
                    answers.put((lines, (message.strip() or "psql: error")
                                 if failed == "true" else None))
                    lines = []
                else:
                    lines.append(line)
        finally:
            ended.set()
            answers.put(None)

    def drive(sink: IO[bytes]) -> None:
        channel = _PsqlChannel(sink, answers, ended, mark)
        try:
            result.append(script(channel))
        except _Ended:
            pass  # psql's exit status and stderr tell why
        except Exception as exc:  # a script's own error: reported after psql has ended
            errors.append(exc)

    cmd = access.tool("psql", database, ["-X", "-q", "-A", "-t"],
                      run.env, run.stack.path, stdin=True)
    cmd = replace(cmd, stdout="capture", drain=read, feeder=drive, capture_stderr=True,
                  echo_stderr=False)
    outcome = run.ctx.runner.run(cmd)
    if errors:
        raise errors[0]
    if result and outcome.ok:
        return result[0]
    raise StepError(failure_line(outcome.stderr_tail, outcome.error or
                                 f"psql exited {outcome.exit_code}", strip_marker=True))


# -- psycopg on the host ---------------------------------------------------------------------
class _PsycopgChannel:
    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def execute(self, statement: str) -> None:
        self._run(statement)

    def rows(self, query: str, columns: int) -> list[list[Any]]:
        return [list(row) for row in self._run(query).fetchall()]

    def _run(self, statement: str) -> Any:
        import psycopg

        from kompose_py.db.postgres.admin import first_line

        try:
            return self.conn.execute(statement.encode())
        except psycopg.Error as exc:
            raise StepError(first_line(exc)) from None


def _psycopg_script(access: HostAccess, database: str, script: Callable[[Channel], T],
                    opened: Callable[[Any], None] | None = None) -> T:
    import psycopg

    from kompose_py.db.postgres.admin import first_line

    db = access.db
    try:
        conn = psycopg.connect(host=db.host, port=db.port, user=db.user or None,
                               password=db.password, dbname=database, connect_timeout=10,
                               autocommit=True, application_name="kompose")
    except psycopg.Error as exc:
        raise StepError(f"cannot connect to {db.where}: {first_line(exc)}") from None
    try:
        if opened is not None:
            opened(conn)
        return script(_PsycopgChannel(conn))
    except psycopg.Error as exc:
        raise StepError(first_line(exc)) from None
    finally:
        conn.close()


def run_script(run: StackRun, access: AccessKind, database: str,
               script: Callable[[Channel], T], opened: Callable[[Any], None] | None = None
               ) -> T:
    """``script`` against one session in ``database``, wherever the server is reached from.
    ``opened``: gets the psycopg connection (host mode), to cancel its statement from
    another thread."""
    if isinstance(access, HostAccess):
        return _psycopg_script(access, database, script, opened)
    return _psql_script(run, access, database, script)


# -- the counts ------------------------------------------------------------------------------
def _count(channel: Channel) -> dict[str, int]:
    tables = [(str(s), str(t)) for s, t in channel.rows(mf.TABLES, 2)]
    query = mf.count_rows_sql(tables)
    if query is None:
        return {}
    return mf.counts_from_rows(channel.rows(query, 2))


def restored_counts(run: StackRun, access: AccessKind, database: str) -> dict[str, int]:
    """Per table, the rows of ``database`` (a restored copy nobody else writes to)."""
    return run_script(run, access, database, _count)


_NO_TIMEOUTS = ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout")


class SnapshotCounts:
    """Open around one pg_dump: ``snapshot`` is the id to give it (None: run it without,
    the counts are then unknown), ``counts``/``error`` are known after the ``with``."""

    def __init__(self, run: StackRun, access: AccessKind) -> None:
        self.run, self.access = run, access
        self.snapshot: str | None = None
        self.server_version: str | None = None
        self.counts: dict[str, int] | None = None
        self.error: str | None = None
        self._ready = threading.Event()
        self._release = threading.Event()
        self._wanted = True
        self._counting = threading.Event()
        self._conn: Any = None
        self._thread = threading.Thread(target=self._session, daemon=True)

    def __enter__(self) -> SnapshotCounts:
        self._thread.start()
        # Set however the session goes (its thread's finally): a signal ends psql in the
        # container, and a connection from the host gives up after connect_timeout.
        self._ready.wait()
        return self

    def done(self, dumped: bool) -> None:
        """pg_dump has ended; ``dumped``: it succeeded (the counts are still wanted)."""
        self._wanted = dumped
        if not dumped and self._counting.is_set() and self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.cancel()
        self._release.set()

    def __exit__(self, *exc: object) -> None:
        if not self._release.is_set():
            self.done(False)
        self._thread.join()
        if self.counts is None and self.error is None:
            self.error = "the counting session ended before its counts"

    def _script(self, channel: Channel) -> None:
        channel.execute(mf.BEGIN_SNAPSHOT)
        channel.execute(mf.ROW_SECURITY_OFF)
        # As pg_dump does for its own session: a role's or database's timeouts must not end
        # this transaction (an error or a timeout ends it, and with it the exported snapshot
        # pg_dump may not have imported yet).
        for setting in _NO_TIMEOUTS:
            channel.execute(f"SET LOCAL {setting} = 0")
        rows = channel.rows(f"{mf.EXPORT_SNAPSHOT}, current_setting('server_version')", 2)
        self.snapshot = str(rows[0][0])
        self.server_version = str(rows[0][1]).split()[0]
        self._ready.set()
        self._counting.set()
        # In a subtransaction: a counting statement that fails ends only that, and the
        # exported snapshot lives on for a pg_dump that has not imported it yet.
        channel.execute("SAVEPOINT kompose_counts")
        counts: dict[str, int] | None = None
        try:
            counts = _count(channel)
            channel.execute("RELEASE SAVEPOINT kompose_counts")
        except StepError as exc:
            self.error = f"counting failed: {exc.message}"
            channel.execute("ROLLBACK TO SAVEPOINT kompose_counts")
        finally:
            self._counting.clear()
        # pg_dump must have imported the snapshot before its exporter ends: wait for it.
        self._release.wait()  # done() always sets it, also when pg_dump failed or stopped
        if self._wanted and counts is not None:
            self.counts = counts  # taken at the snapshot: valid whatever COMMIT says
        channel.execute("COMMIT")

    def _session(self) -> None:
        try:
            run_script(self.run, self.access, self.access.db.name, self._script,
                       opened=self._opened)
        except StepError as exc:
            self.error = exc.message
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self._ready.set()

    def _opened(self, conn: Any) -> None:
        self._conn = conn
