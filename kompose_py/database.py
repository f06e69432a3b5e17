"""PostgreSQL export, safe import, cleanup and listing.

pg_dump and psql run on the host through the runner, with the password only in their
environment (PGPASSWORD). Administrative SQL goes through psycopg, identifiers always through
``psycopg.sql.Identifier``. This is the only module that imports psycopg, and only inside the
functions that talk to a server (it costs ~50 ms of start-up).

The two promises, and where they are kept:
- an export never leaves a file with a dump name unless pg_dump succeeded: it streams to a
  hidden ``.<name>.partial`` that is fsynced and hard-linked into place (a link never
  overwrites, so two dumps in one second both survive), then unlinked (:func:`export`);
- an import never touches the target before the dump has loaded completely into a scratch
  database in one transaction with ON_ERROR_STOP; only then the target is swapped out, and any
  failure on the way puts it back (:func:`swap_in`).
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol

from kompose_py.dumps import Dump, dump_name, find_dumps
from kompose_py.envfiles import StackEnv
from kompose_py.errors import StepError
from kompose_py.pipeline import RunContext, StackRun, run_with_hooks
from kompose_py.results import StackResult
from kompose_py.runner import Command
from kompose_py.stacks import Stack

if TYPE_CHECKING:
    from psycopg import sql as psql_sql

CONNECT_TIMEOUT = "10"
LOCK_NAME = ".kompose.lock"
# How long an import waits for clients of the target to go away before it gives up.
SWAP_WAIT_SECONDS = 10.0
_CONNINFO_SPECIAL = re.compile(r"=|^postgres(ql)?://")


@dataclass(frozen=True)
class DbSettings:
    name: str
    host: str
    port: str
    user: str
    password: str | None
    maintenance_db: str

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port} as {self.user or '(default user)'}"


def settings_for(env: StackEnv) -> DbSettings | None:
    """The stack's database, or None: only the stack's own .env or -e make a database stack."""
    if "DB_NAME" not in env.own_keys or not env.values.get("DB_NAME"):
        return None
    v = env.values
    return DbSettings(v["DB_NAME"], v.get("DB_HOST") or "localhost", v.get("DB_PORT") or "5432",
                      v.get("DB_USER", ""), v.get("DB_PASSWORD"),
                      v.get("DB_ADMIN_DATABASE") or "postgres")


def _db_argument(name: str) -> str:
    """-d for pg_dump/psql: a name containing '=' or a URI prefix would be read as a
    connection string, so such names are passed as a quoted ``dbname='...'`` instead."""
    if not _CONNINFO_SPECIAL.search(name):
        return name
    escaped = name.replace("\\", "\\\\").replace("'", "\\'")
    return f"dbname='{escaped}'"


def pg_env(run: StackRun, db: DbSettings) -> dict[str, str]:
    env = dict(run.env)
    env.pop("PGPASSWORD", None)
    if db.password:
        env["PGPASSWORD"] = db.password  # never argv: /proc/<pid>/cmdline is world-readable
    env.setdefault("PGCONNECT_TIMEOUT", CONNECT_TIMEOUT)
    return env


def pg_hook_env(db: DbSettings) -> dict[str, str]:
    """db hooks get libpq's variables, so `pg_dump "$DB_NAME"` in a hook reaches the same
    server as kompose does, with no password on its command line."""
    env = {"PGHOST": db.host, "PGPORT": db.port, "PGDATABASE": db.name}
    if db.user:
        env["PGUSER"] = db.user
    if db.password:
        env["PGPASSWORD"] = db.password
    return env


def pg_argv(program: str, db: DbSettings, database: str, *extra: str) -> tuple[str, ...]:
    args = [program, "--no-password", "-h", db.host, "-p", db.port]
    if db.user:
        args += ["-U", db.user]
    return (*args, *extra, "-d", _db_argument(database))


# -- administrative SQL -------------------------------------------------------------------
class Admin(Protocol):
    """What an import needs from the server; the dry-run version only reports."""

    def database_exists(self, name: str) -> bool: ...

    def database_settings(self, name: str) -> tuple[str, str, str] | None: ...

    def execute(self, statement: psql_sql.Composed) -> None: ...

    def close(self) -> None: ...


class ServerAdmin:
    def __init__(self, db: DbSettings, report: Callable[[str], None]) -> None:
        import psycopg  # here, not at the top: only database commands pay for it

        self._report = report
        try:
            self.conn = psycopg.connect(
                host=db.host, port=db.port, user=db.user or None, password=db.password,
                dbname=db.maintenance_db, connect_timeout=int(CONNECT_TIMEOUT),
                autocommit=True, application_name="kompose")
        except psycopg.Error as exc:
            raise StepError(f"cannot connect to {db.where}: {_first_line(exc)}") from None

    def database_exists(self, name: str) -> bool:
        row = self.conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        return row is not None

    def database_settings(self, name: str) -> tuple[str, str, str] | None:
        row = self.conn.execute(
            "SELECT pg_encoding_to_char(encoding), datcollate, datctype FROM pg_database"
            " WHERE datname = %s", (name,)).fetchone()
        return (str(row[0]), str(row[1]), str(row[2])) if row else None

    def execute(self, statement: psql_sql.Composed) -> None:
        import psycopg

        self._report("SQL: " + statement.as_string(self.conn))
        try:
            self.conn.execute(statement)
        except psycopg.Error as exc:
            raise StepError(_first_line(exc)) from None

    def close(self) -> None:
        self.conn.close()


class PlanAdmin:
    """Dry-run: says which SQL would run, runs none, connects to nothing."""

    def __init__(self, report: Callable[[str], None]) -> None:
        self._report = report

    def database_exists(self, name: str) -> bool:
        return True

    def database_settings(self, name: str) -> tuple[str, str, str] | None:
        return None

    def execute(self, statement: psql_sql.Composed) -> None:
        self._report("SQL: " + statement.as_string(None) + "  would run")

    def close(self) -> None:
        pass


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- the lock -----------------------------------------------------------------------------
@contextlib.contextmanager
def stack_lock(stack: Stack, command: str) -> Iterator[None]:
    """One export/import per stack at a time; the second fails at once naming the holder.

    An flock on a hidden file in the stack folder: the kernel releases it when the holder
    dies, so a crashed kompose never leaves a stale lock behind.
    """
    path = stack.path / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 300, 0).decode(errors="replace").strip() or "another process"
            raise StepError(f"{stack.name} is busy: {holder}",
                            hint=f"wait for it, or remove nothing: the lock is {path}") from None
        os.ftruncate(fd, 0)
        since = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        os.pwrite(fd, f"kompose {command} (pid {os.getpid()} on {socket.gethostname()}, "
                      f"since {since})\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _locked(ctx: RunContext, stack: Stack, command: str,
            body: Callable[[], StackResult]) -> StackResult:
    if ctx.dry_run:
        return body()  # a dry-run writes nothing, not even a lock file
    try:
        with stack_lock(stack, command):
            return body()
    except StepError as exc:
        return StackResult(stack.name, "failed", failed_step="pre", exit_code=1,
                           message=exc.message)


def skipped(stack: Stack) -> StackResult:
    return StackResult(stack.name, "skipped", message="no DB_NAME in its .env")


# -- export -------------------------------------------------------------------------------
def human_size(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"  # pragma: no cover


class _DumpWatcher:
    """While pg_dump writes: flush the file to disk as it grows (so the fsync before the
    rename has little left to do: ~0.3 s saved on a 500 MB dump here), and show a live byte
    counter when someone watches a terminal."""

    FLUSH_EVERY = 32 << 20

    def __init__(self, path: Path, show: Callable[[int], None] | None) -> None:
        self.path, self.show = path, show
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        fd = -1
        flushed = 0
        try:
            while not self.done.wait(0.25):
                if fd < 0:
                    with contextlib.suppress(OSError):
                        fd = os.open(self.path, os.O_RDONLY)
                    continue
                size = os.fstat(fd).st_size
                if size - flushed >= self.FLUSH_EVERY:
                    os.fdatasync(fd)
                    flushed = size
                if self.show is not None:
                    self.show(size)
        finally:
            if fd >= 0:
                os.close(fd)

    def __enter__(self) -> _DumpWatcher:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(tmp: Path, db_name: str, folder: Path, when: datetime, compressed: bool) -> Path:
    """Give the finished dump its name without ever replacing an existing file."""
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    counter = 1
    while True:
        final = folder / dump_name(db_name, when, counter, compressed)
        try:
            os.link(tmp, final)
        except FileExistsError:
            counter += 1
            continue
        tmp.unlink()
        _fsync_dir(folder)
        return final


def export(ctx: RunContext, stack: Stack, env: StackEnv, compress: bool,
           progress: Callable[[str, int], None] | None = None) -> StackResult:
    db = settings_for(env)
    if db is None:
        return skipped(stack)
    planned_paths: list[str] = []  # dry-run: the post hook is shown with the path it would get

    def main(run: StackRun) -> None:
        when = datetime.now()
        planned = stack.path / dump_name(db.name, when, 1, compress)
        tmp = stack.path / f".{planned.name}.{os.getpid()}.partial"
        extra = ("-Z", "6") if compress else ()
        cmd = Command(pg_argv("pg_dump", db, db.name, *extra), stack.path, pg_env(run, db),
                      stdin="null", stdout=tmp, capture_stderr=True)
        if ctx.dry_run:
            run.run_command("pg_dump", cmd, {"PGPASSWORD": ""}, suffix=f" > {planned.name}")
            run.note(f"would write {planned.name} through a hidden temporary file")
            planned_paths.append(str(planned))
            return
        started = time.monotonic()
        show = (lambda size: progress(stack.name, size)) if progress else None
        try:
            with _DumpWatcher(tmp, show):
                outcome = run.run_command("pg_dump", cmd, {"PGPASSWORD": ""},
                                          suffix=f" > {tmp.name}")
            if not outcome.ok:
                if outcome.stderr_tail and not outcome.error:
                    run.result.message = run.mask(_pg_error(outcome.stderr_tail, db))
                return
            final = _publish(tmp, db.name, stack.path, when, compress)
        finally:
            tmp.unlink(missing_ok=True)  # a partial dump must never look like a dump
        size = final.stat().st_size
        run.result.files.append(str(final))
        run.note(f"wrote {final.name} ({human_size(size)} in "
                 f"{time.monotonic() - started:.1f}s)")

    def hook_args(run: StackRun, phase: str) -> list[str]:
        if phase == "post":
            return list(run.result.files[-1:] or planned_paths)
        return []

    return _locked(ctx, stack, "db:export",
                   lambda: run_with_hooks(ctx, stack, env, "db:export", main, hook_args,
                                          hook_env=pg_hook_env(db)))


_CONNECTION_FAILED = re.compile(r'connection to server .*? failed: (?:FATAL:\s*)?(.*)')


def _pg_error(tail: Sequence[str], db: DbSettings) -> str:
    """The one line of pg_dump/psql's stderr that says what went wrong, in kompose's words
    when it is about the connection (wrong password, no server, no such database)."""
    line = next((x for x in tail if "error:" in x or "FATAL:" in x or "ERROR:" in x),
                tail[-1]).strip()
    match = _CONNECTION_FAILED.search(line)
    if match:
        return f"cannot connect to {db.where}: {match[1].strip()}"
    return line


# -- import -------------------------------------------------------------------------------
def resolve_dump(given: str, cwd: Path, root: Path, stack: Stack) -> Path:
    """An explicit dump path: as typed (from the current directory), else under the root,
    else in the stack folder."""
    for base in (cwd, root, stack.path):
        candidate = (base / given).resolve()
        if candidate.is_file():
            return candidate
    raise StepError(f"dump file {given!r} not found",
                    hint=f"looked in {cwd}, {root} and {stack.path}")


def _feed_gzip(path: Path) -> Callable[[IO[bytes]], None]:
    def feed(sink: IO[bytes]) -> None:
        with gzip.open(path, "rb") as source:
            while chunk := source.read(1 << 20):
                sink.write(chunk)

    return feed


def import_(ctx: RunContext, stack: Stack, env: StackEnv, dump: Path | None) -> StackResult:
    db = settings_for(env)
    if db is None:
        return skipped(stack)

    def body() -> StackResult:
        chosen = dump
        if chosen is None:
            # Chosen under the lock: an export that was running has finished by now.
            dumps = find_dumps(stack.path, db.name)
            if not dumps:
                return StackResult(stack.name, "failed", failed_step="pre", exit_code=1,
                                   message=f"no dump of {db.name} in {stack.path}")
            chosen = dumps[-1].path
        source = chosen
        result = run_with_hooks(ctx, stack, env, "db:import",
                                lambda run: _replace(run, db, source),
                                lambda run, phase: [str(source)], hook_env=pg_hook_env(db))
        result.files = [str(source)]
        return result

    return _locked(ctx, stack, "db:import", body)


def _replace(run: StackRun, db: DbSettings, dump: Path) -> None:
    """Load ``dump`` into a scratch database, then swap it in for ``db.name``."""
    from psycopg import sql

    dry_run = run.ctx.dry_run
    token = secrets.token_hex(4)
    scratch = f"{db.name[:40]}_kompose_new_{token}"
    aside = f"{db.name[:40]}_kompose_old_{token}"
    admin: Admin = PlanAdmin(run.note) if dry_run else ServerAdmin(db, run.note)
    try:
        existing = admin.database_settings(db.name)
        create = sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(scratch))
        if existing:
            # Keep the target's encoding and locale; template0 keeps template1's extras out.
            create = sql.SQL("{} ENCODING {} LC_COLLATE {} LC_CTYPE {}").format(
                create, sql.Literal(existing[0]), sql.Literal(existing[1]),
                sql.Literal(existing[2]))
        admin.execute(create)
        try:
            if _load(run, db, scratch, dump):
                swap_in(admin, db.name, scratch, aside)
        finally:
            if not dry_run and admin.database_exists(scratch):
                # Whatever happened, no scratch database outlives the import.
                drop(admin, scratch)
    finally:
        admin.close()
    if run.result.status == "success" and not dry_run:
        run.note(f"{db.name} replaced by {dump.name}")


def _load(run: StackRun, db: DbSettings, scratch: str, dump: Path) -> bool:
    compressed = dump.name.endswith(".gz")
    extra = ["-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction"]
    if not compressed:
        extra += ["-f", str(dump)]
    cmd = Command(pg_argv("psql", db, scratch, *extra), run.stack.path, pg_env(run, db),
                  stdin="null", stdout="null", capture_stderr=True,
                  feeder=_feed_gzip(dump) if compressed else None)
    outcome = run.run_command("psql", cmd, {"PGPASSWORD": ""},
                              suffix=f" < {dump.name} (decompressed by kompose)"
                              if compressed else "")
    if not outcome.ok and outcome.stderr_tail and not outcome.error:
        run.result.message = run.mask("the dump did not load: "
                                      + _pg_error(outcome.stderr_tail, db))
    return outcome.ok


def swap_in(admin: Admin, target: str, scratch: str, aside: str) -> None:
    """Replace ``target`` by the loaded ``scratch``; on any failure ``target`` is restored."""
    from psycopg import sql

    tgt, new, old = sql.Identifier(target), sql.Identifier(scratch), sql.Identifier(aside)
    if not admin.database_exists(target):
        admin.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(new, tgt))
        return
    # No new sessions, then end the current ones; a client that reconnects in between is
    # ended again, for at most SWAP_WAIT_SECONDS.
    admin.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(tgt))
    try:
        _retry(admin, target, sql.SQL("ALTER DATABASE {} RENAME TO {}").format(tgt, old))
    except StepError:
        with contextlib.suppress(StepError):
            admin.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(tgt))
        raise
    try:
        admin.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(new, tgt))
    except StepError:
        with contextlib.suppress(StepError):
            admin.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(old, tgt))
            admin.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(tgt))
        raise
    drop(admin, aside)


def _terminate(admin: Admin, database: str) -> None:
    """End the sessions on ``database`` that this role may end. (Not DROP ... WITH (FORCE):
    for a non-superuser that fails outright when an autovacuum worker is on the database,
    which a freshly loaded one often has; a plain DROP stops autovacuum by itself.)"""
    from psycopg import sql

    admin.execute(sql.SQL(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = {}"
        " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        " AND pg_has_role(usesysid, 'MEMBER')").format(sql.Literal(database)))


def _retry(admin: Admin, database: str, statement: psql_sql.Composed) -> None:
    """End sessions on ``database`` and run ``statement``; again while sessions come back,
    for at most SWAP_WAIT_SECONDS, so a reconnecting client cannot block it forever."""
    deadline = time.monotonic() + SWAP_WAIT_SECONDS
    while True:
        _terminate(admin, database)
        try:
            admin.execute(statement)
            return
        except StepError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def drop(admin: Admin, database: str) -> None:
    from psycopg import sql

    _retry(admin, database, sql.SQL("DROP DATABASE IF EXISTS {}").format(
        sql.Identifier(database)))


# -- cleanup and list ---------------------------------------------------------------------
def cleanup(ctx: RunContext, stack: Stack, env: StackEnv, keep: int) -> StackResult:
    db = settings_for(env)
    if db is None:
        return skipped(stack)

    def main(run: StackRun) -> None:
        dumps = find_dumps(stack.path, db.name)
        doomed = dumps[:-keep] if keep else dumps
        for dump in doomed:
            if ctx.dry_run:
                run.note(f"would delete {dump.path.name}")
            else:
                dump.path.unlink(missing_ok=True)
                run.note(f"deleted {dump.path.name}")
        kept = len(dumps) - len(doomed)
        run.note(f"kept {kept} of {len(dumps)} dumps of {db.name}")

    return run_with_hooks(ctx, stack, env, "db:cleanup", main, lambda run, phase: [],
                          hook_env=pg_hook_env(db))


@dataclass(frozen=True)
class DumpInfo:
    dump: Dump
    size: int
    age_seconds: float


def list_dumps(stack: Stack, env: StackEnv) -> tuple[DbSettings | None, list[DumpInfo]]:
    db = settings_for(env)
    if db is None:
        return None, []
    now = datetime.now()
    return db, [DumpInfo(d, d.path.stat().st_size, (now - d.timestamp).total_seconds())
                for d in find_dumps(stack.path, db.name)]
