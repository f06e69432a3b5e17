"""PostgreSQL export, safe import, recovery, cleanup, listing and shell — the safety logic,
written once above the two ways of reaching a server (pgaccess.py: host tools or the
database's container).

The promises, and where they are kept:
- an export never leaves a file with a dump name unless pg_dump succeeded and the file ends
  with pg_dump's completion trailer: it streams to a hidden ``.<name>.partial`` (mode 0600)
  that is checked, fsynced and hard-linked into place (a link never overwrites, so two dumps in
  one second both survive), then unlinked (:func:`export`);
- an import refuses an incomplete dump before anything is touched, and never touches the
  target before the dump has loaded completely into a scratch database in one transaction
  with ON_ERROR_STOP, every psql meta-command checked on the way (dumpscan.py); only then is
  the target swapped out, with a journal of each step in the stack folder, so that a crash or
  SIGKILL half-way is put right by the next kompose command for that stack (:func:`recover`);
- one export, import or cleanup per stack at a time (:func:`stack_lock`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gzip
import json
import os
import re
import secrets
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from kompose_py.dumps import (
    Dump,
    complete_dumps,
    dump_name,
    find_dumps,
    incomplete_reason,
)
from kompose_py.envfiles import StackEnv
from kompose_py.errors import StepError
from kompose_py.pgaccess import (
    Admin,
    ContainerAccess,
    DbSettings,
    HostAccess,
    is_database_stack,
    publishers,
    resolve,
    running_containers,
    settings_for,
    settings_from,
)
from kompose_py.pipeline import RunContext, StackRun, run_with_hooks
from kompose_py.results import StackResult
from kompose_py.runner import Command, Runner, new_private_file
from kompose_py.stacks import Stack

if TYPE_CHECKING:
    from psycopg import sql as psql_sql

LOCK_NAME = ".kompose.lock"
JOURNAL_NAME = ".kompose-import.json"
# How long an import retries a swap step while clients of the target come back.
SWAP_WAIT_SECONDS = 10.0
_LOCK_RECORD = 256  # the holder line, padded: rewritten in place, never truncated
_MAX_IDENTIFIER = 63  # bytes, PostgreSQL's NAMEDATALEN - 1
AccessKind = HostAccess | ContainerAccess

__all__ = ["DbSettings", "is_database_stack", "settings_for"]


def skipped(stack: Stack) -> StackResult:
    return StackResult(stack.name, "skipped", message="no DB_NAME in its .env")


def query_runner(ctx: RunContext) -> Runner:
    """Read-only engine queries (which container?) run in dry-runs too: the plan must name
    the container it would use."""
    return Runner(ctx.runner.supervisor) if ctx.dry_run else ctx.runner


def access_for(ctx: RunContext, stack: Stack, values: dict[str, str]) -> AccessKind:
    return resolve(settings_from(values), stack, values, query_runner(ctx), cached=ctx.dry_run)


def describe_access(stack: Stack, env: StackEnv) -> tuple[str, str]:
    """For --list: where the database is reached from, short and long (or why that cannot
    be said)."""
    try:
        access = resolve(settings_from(env.values), stack, env.values, Runner(), cached=True)
    except StepError as exc:
        return "?", f"unresolved: {exc.message}"
    short = "host" if isinstance(access, HostAccess) else f"container:{access.container}"
    return short, access.describe()


# -- the lock -----------------------------------------------------------------------------
@contextlib.contextmanager
def stack_lock(stack: Stack, command: str) -> Iterator[None]:
    """One export/import/cleanup per stack at a time; the second fails at once naming the
    holder.

    An flock on a hidden file in the stack folder: the kernel releases it when the holder
    dies, so a crashed kompose never leaves a stale lock behind. The file is opened without
    following a symlink and is never truncated (a link there must not clobber its target);
    anything but a plain file of our own there is a clear error.
    """
    path = stack.path / LOCK_NAME
    flags = os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        try:
            fd = os.open(path, os.O_RDWR | flags, 0o600)
        except OSError as exc:
            if exc.errno not in (errno.EROFS, errno.EACCES) or not path.exists():
                raise
            fd = os.open(path, os.O_RDONLY | flags)  # a read-only folder still locks
    except OSError as exc:
        what = "is a symlink" if exc.errno == errno.ELOOP else \
            "is a folder" if exc.errno == errno.EISDIR else (exc.strerror or str(exc))
        raise StepError(f"cannot use the lock file {path}: {what}",
                        hint="remove what is there; kompose creates the file itself") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            raise StepError(f"cannot use the lock file {path}: not a plain file of its own",
                            hint="remove what is there; kompose creates the file itself")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, _LOCK_RECORD, 0).decode(errors="replace").strip()
            raise StepError(f"{stack.name} is busy: {holder or 'another process'}",
                            hint=f"wait for it; the lock ({path}) ends with that process, "
                                 f"there is nothing to remove") from None
        since = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        _write_record(fd, f"kompose {command} (pid {os.getpid()} on {socket.gethostname()}, "
                          f"since {since})")
        try:
            yield
        finally:
            _write_record(fd, "")
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _write_record(fd: int, text: str) -> None:
    record = text.encode()[:_LOCK_RECORD - 1].ljust(_LOCK_RECORD - 1) + b"\n"
    with contextlib.suppress(OSError):  # a read-only lock file: the flock alone protects
        os.pwrite(fd, record, 0)


def _locked(ctx: RunContext, stack: Stack, command: str,
            body: Callable[[], StackResult]) -> StackResult:
    if ctx.dry_run:
        return body()  # a dry-run writes nothing, not even a lock file
    try:
        with stack_lock(stack, command):
            return body()
    except StepError as exc:
        # Nothing of the stack ran: no hook, no command (failed_step "").
        return StackResult(stack.name, "failed", exit_code=1,
                           message=exc.message + (f" ({exc.hint})" if exc.hint else ""))


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
                        fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
                    continue
                size = os.fstat(fd).st_size
                if size - flushed >= self.FLUSH_EVERY:
                    with contextlib.suppress(OSError):
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


def _gzip_into(path: Path) -> Callable[[IO[bytes]], None]:
    """Compress pg_dump's plain output on the host, as it arrives (both ways of reaching the
    server give the same .sql.gz, whatever pg_dump version runs)."""
    def drain(source: IO[bytes]) -> None:
        with new_private_file(path) as raw, gzip.GzipFile(
                filename="", mode="wb", compresslevel=6, fileobj=raw, mtime=0) as packed:
            while chunk := source.read(1 << 20):
                packed.write(chunk)
    return drain


_MISMATCH = re.compile(r"server version: ([^;]+); pg_dump version: (.+)")


def export(ctx: RunContext, stack: Stack, env: StackEnv, compress: bool,
           progress: Callable[[str, int], None] | None = None) -> StackResult:
    if not is_database_stack(env):
        return skipped(stack)
    planned_paths: list[str] = []  # dry-run: the post hook is shown with the path it would get

    def main(run: StackRun) -> None:
        access = access_for(ctx, stack, run.env)
        db = access.db
        run.note(f"database {db.name} via {access.describe()}")
        when = datetime.now(timezone.utc)
        planned = stack.path / dump_name(db.name, when, 1, compress)
        if ctx.dry_run:
            cmd = _dump_command(run, access, planned, compress)
            run.run_command("pg_dump", cmd, {"PGPASSWORD": ""} if db.password else None,
                            suffix=f" > {planned.name}"
                            + (" (compressed by kompose)" if compress else ""))
            run.note(f"would write {planned.name} through a hidden temporary file, checked "
                     f"for pg_dump's completion trailer before it gets its name")
            planned_paths.append(str(planned))
            return
        started = time.monotonic()
        final, tail = _dump(run, access, when, compress, progress)
        if final is None and access.mode == "host" and access.db.access != "host" \
                and any("server version mismatch" in line for line in tail):
            fallback = _newer_server_container(run, access)
            if fallback is not None:
                run.note(f"the host's pg_dump is older than the server; retrying via "
                         f"{fallback.describe()}")
                run.retry()
                final, _ = _dump(run, fallback, when, compress, progress)
        if final is None:
            return
        size = final.stat().st_size
        run.result.files.append(str(final))
        run.note(f"wrote {final.name} ({human_size(size)} in "
                 f"{time.monotonic() - started:.1f}s)")

    def hook_args(run: StackRun, phase: str) -> list[str]:
        if phase == "post":
            return list(run.result.files[-1:] or planned_paths)
        return []

    return _locked(ctx, stack, "db:export",
                   lambda: _with_recovery(ctx, stack, env, "db:export", main, hook_args))


def _dump_command(run: StackRun, access: AccessKind, tmp: Path, compress: bool) -> Command:
    cmd = access.tool("pg_dump", access.db.name, [], run.env, run.stack.path)
    if compress:
        return replace(cmd, stdin="null", drain=_gzip_into(tmp), capture_stderr=True)
    return replace(cmd, stdin="null", stdout=tmp, capture_stderr=True)


def _dump(run: StackRun, access: AccessKind, when: datetime, compress: bool,
          progress: Callable[[str, int], None] | None) -> tuple[Path | None, tuple[str, ...]]:
    """One pg_dump into a hidden partial file, checked and published: (the dump, or None on
    failure, which is recorded in ``run``; the error lines pg_dump printed)."""
    stack, db = run.stack, access.db
    planned = stack.path / dump_name(db.name, when, 1, compress)
    tmp = stack.path / f".{planned.name}.{os.getpid()}.partial"
    show = (lambda size: progress(stack.name, size)) if progress else None
    # Removed on every ending, a second signal's immediate one included.
    with run.ctx.runner.supervisor.temporary(tmp):
        try:
            with _DumpWatcher(tmp, show):
                outcome = run.run_command(
                    "pg_dump", _dump_command(run, access, tmp, compress),
                    {"PGPASSWORD": ""} if db.password else None,
                    suffix=f" > {tmp.name}" + (" (compressed by kompose)" if compress else ""))
            if not outcome.ok:
                tail = outcome.stderr_tail
                if not tail and access.mode == "container" and outcome.exit_code in (126, 127):
                    # docker exec says "executable file not found" on stdout: the dump file.
                    with contextlib.suppress(OSError), open(tmp, "rb") as handle:
                        tail = tuple(handle.read(500).decode(errors="replace").splitlines()[:1])
                if tail and not outcome.error:
                    run.result.message = run.mask(pg_error(tail, access))
                return None, tail
            reason = incomplete_reason(tmp, compress)
            if reason is not None and run.ctx.runner.supervisor.cancelled.is_set():
                run.stopped("interrupted before the dump was complete; nothing was published")
                return None, ()
            if reason is not None:
                run.fail(f"pg_dump exited 0 but its output is not a complete dump ({reason}); "
                         f"nothing was published")
                return None, ()
            try:
                return _publish(tmp, db.name, stack.path, when, compress), ()
            except OSError as exc:
                run.fail(f"cannot publish the dump in {stack.path}: {exc.strerror or exc}")
                return None, ()
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)  # a partial dump must never look like a dump


def _newer_server_container(run: StackRun, access: AccessKind) -> ContainerAccess | None:
    """Auto mode, host tools too old for the server: the container that publishes DB_PORT on
    this stack's engine, if exactly one does."""
    containers = running_containers(run.ctx.runner, run.env, run.stack.path)
    if isinstance(containers, str):
        return None
    found = publishers(access.db, containers)
    if len(found) != 1:
        return None
    from kompose_py.pgaccess import engine_label, through

    return through(found[0], access.db, engine_label(run.env),
                   f"publishes port {access.db.port}")


_CONNECTION_FAILED = re.compile(r'connection to server .*? failed: (?:FATAL:\s*)?(.*)')


def pg_error(tail: Sequence[str], access: AccessKind) -> str:
    """The one line of pg_dump/psql's stderr that says what went wrong, in kompose's words
    when it is about the connection, the container or the versions."""
    db = access.db
    text = "\n".join(tail)
    mismatch = _MISMATCH.search(text)
    if mismatch:
        server, tool = mismatch[1].strip(), mismatch[2].strip()
        hint = ("set DB_CONTAINER to the server's container (or DB_ACCESS=container), or "
                "install a newer pg_dump on the host") if access.mode == "host" else \
            "the container's pg_dump is older than the server it talks to"
        return f"server is PostgreSQL {server}, pg_dump is {tool}: {hint}"
    line = next((x for x in tail if "error:" in x or "FATAL:" in x or "ERROR:" in x
                 or "Error" in x), tail[-1]).strip()
    match = _CONNECTION_FAILED.search(line)
    if match:
        where = db.where if access.mode == "host" else \
            f"{db.user or 'the server'} in {access.describe()}"
        return f"cannot connect to {where}: {match[1].strip()}"
    if access.mode == "container" and "executable file not found" in line:
        return f"{access.describe()} has no PostgreSQL client tools: {line}"
    if access.mode == "container" and ("No such container" in line or "is not running" in line):
        return f"{access.describe()}: {line}"
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


def _guarded_feed(path: Path, force: bool, removed: list[tuple[int, str]]
                  ) -> Callable[[IO[bytes]], None]:
    """psql's stdin: the dump (decompressed when .gz), every line checked for psql
    meta-commands before it is written (dumpscan.py)."""
    from kompose_py.dumpscan import MetaCommandGuard

    def feed(sink: IO[bytes]) -> None:
        guard = MetaCommandGuard(force)
        opener: Any = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rb") as source:
            while chunk := source.read(1 << 20):
                sink.write(guard.feed(chunk))
            sink.write(guard.finish())
        removed.extend(guard.removed)

    return feed


def import_(ctx: RunContext, stack: Stack, env: StackEnv, dump: Path | None,
            force: bool = False) -> StackResult:
    if not is_database_stack(env):
        return skipped(stack)

    def body() -> StackResult:
        db_name = env.values["DB_NAME"]
        chosen = dump
        if chosen is None:
            # Chosen under the lock: an export that was running has finished by now.
            dumps = complete_dumps(stack.path, db_name)
            if not dumps:
                others = len(find_dumps(stack.path, db_name))
                return StackResult(stack.name, "failed", exit_code=1,
                                   message=f"no complete dump of {db_name} in {stack.path}"
                                   + (f" ({others} incomplete, see db:list)" if others else ""))
            chosen = dumps[-1].path
        reason = incomplete_reason(chosen)
        if reason is not None and not force:
            return StackResult(
                stack.name, "failed", exit_code=1,
                message=f"refusing {chosen.name}: {reason}; nothing was touched (--force "
                        f"imports it anyway, still through a scratch database)",
                files=[str(chosen)])
        source = chosen
        return _with_recovery(ctx, stack, env, "db:import",
                              lambda run: _replace(run, source, force),
                              lambda run, phase: [str(source)], files=[str(source)])

    return _locked(ctx, stack, "db:import", body)


def scratch_names(target: str, token: str) -> tuple[str, str]:
    """The scratch and the aside name for ``target``: valid identifiers (at most 63 bytes,
    cut at a character boundary, whatever the name's script) and distinct per import."""
    room = _MAX_IDENTIFIER - len("_kompose_new_") - len(token)
    raw = target.encode()
    if len(raw) <= room:
        stem = target
    else:
        # Cut, the names of two databases that differ only after the cut would be the same,
        # and recovering one would rename or drop the other's copy: a digest of the whole
        # name keeps them apart.
        import hashlib

        digest = hashlib.sha256(raw).hexdigest()[:8]
        stem = raw[:room - len(digest) - 1].decode(errors="ignore") + "_" + digest
    return f"{stem}_kompose_new_{token}", f"{stem}_kompose_old_{token}"


def _replace(run: StackRun, dump: Path, force: bool) -> None:
    """Load ``dump`` into a scratch database, give it the target's settings, then swap it in
    for the target, journaling each step."""
    from psycopg import sql

    from kompose_py.pgadmin import PlanAdmin

    ctx = run.ctx
    access = access_for(ctx, run.stack, run.env)
    db = access.db
    run.note(f"database {db.name} via {access.describe()}")
    scratch, aside = scratch_names(db.name, secrets.token_hex(4))
    admin: Admin = PlanAdmin(run.note) if ctx.dry_run else \
        access.admin(ctx.runner, run.env, run.stack.path, run.note)
    journal = Journal(run.stack, dry_run=ctx.dry_run)
    try:
        target = _target_info(admin, db.name)
        if ctx.dry_run:
            # The plan shows the whole swap, as for a target that exists (nothing is asked).
            target = {"datname": db.name, "datallowconn": True}
        journal.write(target=db.name, scratch=scratch, aside=aside, phase="load",
                      allow_connections=target["datallowconn"] if target else True)
        admin.execute(_create_like(sql.Identifier(scratch), None if ctx.dry_run else target))
        if ctx.dry_run:
            run.note("(a real run adds the target's ENCODING, LC_COLLATE, LC_CTYPE and locale "
                     "provider, read from the server)")
        swapped = False
        try:
            removed: list[tuple[int, str]] = []
            if _load(run, access, scratch, dump, force, removed) and not run.interrupted():
                for line, command in removed:
                    run.note(f"--force: left out line {line} of {dump.name} (psql "
                             f"\\{command})")
                if target and ctx.dry_run:
                    run.note(f"would give {scratch} {db.name}'s owner, privileges, settings, "
                             f"connection limit and comment")
                elif target:
                    _copy_settings(admin, target, scratch)
                if not run.interrupted():
                    # From here on the swap runs to its end, signals or not: each step is a
                    # fact in the journal, and stopping half-way is what would lose data.
                    run.main_done = True
                    swapped = _swap(admin, journal, db.name, scratch, aside, target, run)
        finally:
            if not swapped and not ctx.dry_run:
                _drop_quietly(admin, scratch, run, journal)
        if not ctx.dry_run and not journal.pending:
            journal.clear()
    finally:
        admin.close()
    if run.result.status == "success" and not ctx.dry_run:
        run.note(f"{db.name} replaced by {dump.name}")


def _load(run: StackRun, access: AccessKind, scratch: str, dump: Path, force: bool,
          removed: list[tuple[int, str]]) -> bool:
    cmd = access.tool("psql", scratch,
                      ["-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction"],
                      run.env, run.stack.path, stdin=True)
    cmd = replace(cmd, stdout="null", capture_stderr=True,
                  feeder=_guarded_feed(dump, force, removed))
    outcome = run.run_command("psql", cmd, {"PGPASSWORD": ""} if access.db.password else None,
                              suffix=f" < {dump.name} (fed by kompose, psql meta-commands "
                                     f"checked)")
    if not outcome.ok and outcome.stderr_tail and not outcome.error:
        run.result.message = run.mask("the dump did not load: "
                                      + pg_error(outcome.stderr_tail, access))
    return outcome.ok


# -- the target's own settings -------------------------------------------------------------
def _target_info(admin: Admin, name: str) -> dict[str, Any] | None:
    from psycopg import sql

    rows = admin.query(sql.SQL(
        "SELECT d.datname, pg_encoding_to_char(d.encoding) AS encoding, d.datcollate,"
        " d.datctype, d.datconnlimit, d.datallowconn, pg_get_userbyid(d.datdba) AS owner,"
        " d.datacl IS NULL AS default_acl, shobj_description(d.oid, 'pg_database') AS comment,"
        " to_jsonb(d) AS catalog, current_user AS me,"
        " ARRAY(SELECT jsonb_build_object('grantee', CASE WHEN a.grantee = 0 THEN NULL"
        "        ELSE pg_get_userbyid(a.grantee) END, 'privilege', a.privilege_type,"
        "        'grantable', a.is_grantable) FROM aclexplode(d.datacl) a) AS acl,"
        " ARRAY(SELECT jsonb_build_object('role', CASE WHEN s.setrole = 0 THEN NULL"
        "        ELSE pg_get_userbyid(s.setrole) END, 'config', s.setconfig)"
        "        FROM pg_db_role_setting s WHERE s.setdatabase = d.oid) AS settings"
        " FROM pg_database d WHERE d.datname = {}").format(sql.Literal(name)))
    if not rows:
        return None
    row = dict(rows[0])
    for key in ("catalog",):
        if isinstance(row.get(key), str):
            row[key] = json.loads(row[key])
    row["acl"] = [json.loads(x) if isinstance(x, str) else x for x in row.get("acl") or []]
    row["settings"] = [json.loads(x) if isinstance(x, str) else x
                       for x in row.get("settings") or []]
    return row


def _create_like(scratch: psql_sql.Identifier, target: dict[str, Any] | None
                 ) -> psql_sql.Composed:
    """CREATE DATABASE for the scratch copy: the target's encoding, locale and collation
    provider (template0 keeps template1's extras out)."""
    from psycopg import sql

    create = sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(scratch)
    if not target:
        return create
    parts = [create, sql.SQL("ENCODING {} LC_COLLATE {} LC_CTYPE {}").format(
        sql.Literal(target["encoding"]), sql.Literal(target["datcollate"]),
        sql.Literal(target["datctype"]))]
    catalog = target.get("catalog") or {}
    provider = {"i": "icu", "b": "builtin", "c": "libc"}.get(catalog.get("datlocprovider", ""))
    if provider and provider != "libc":
        parts.append(sql.SQL("LOCALE_PROVIDER {}").format(sql.SQL(provider)))
        locale = catalog.get("datlocale") or catalog.get("daticulocale")
        if locale:
            key = "ICU_LOCALE" if provider == "icu" else "BUILTIN_LOCALE"
            parts.append(sql.SQL(key + " {}").format(sql.Literal(locale)))
        if catalog.get("daticurules"):
            parts.append(sql.SQL("ICU_RULES {}").format(sql.Literal(catalog["daticurules"])))
    return sql.SQL(" ").join(parts)


# GUCs whose value is a list: stored flattened ("\"$user\", public"), set element by element.
_LIST_SETTINGS = frozenset({"search_path", "temp_tablespaces", "session_preload_libraries",
                            "local_preload_libraries", "shared_preload_libraries",
                            "default_text_search_config"})
_LIST_ITEM = re.compile(r'\s*("(?:[^"]|"")*"|[^,]+?)\s*(?:,|$)')


def _setting_value(name: str, value: str) -> psql_sql.Composable:
    from psycopg import sql

    if name.lower() not in _LIST_SETTINGS - {"default_text_search_config"}:
        return sql.Literal(value)
    items = []
    for match in _LIST_ITEM.finditer(value):
        item = match[1]
        if not item:
            continue
        if item.startswith('"'):
            item = item[1:-1].replace('""', '"')
        items.append(sql.Literal(item))
    return sql.SQL(", ").join(items) if items else sql.Literal("")


def _copy_settings(admin: Admin, target: dict[str, Any], scratch: str) -> None:
    """Give the loaded scratch database what belongs to the database rather than to its
    contents, so that the swap keeps it: owner, ACL (a REVOKE CONNECT … FROM PUBLIC must
    survive), ALTER DATABASE/ROLE … SET values, connection limit, comment."""
    from psycopg import sql

    new = sql.Identifier(scratch)
    if target["owner"] != target["me"]:
        try:
            admin.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                new, sql.Identifier(target["owner"])))
        except StepError as exc:
            raise StepError(f"cannot keep {target['datname']}'s owner {target['owner']}: "
                            f"{exc.message}; the target is untouched",
                            hint="import as the owner, or as a member of its role") from None
    if target["datconnlimit"] != -1:
        admin.execute(sql.SQL("ALTER DATABASE {} CONNECTION LIMIT {}").format(
            new, sql.Literal(int(target["datconnlimit"]))))
    if target.get("comment") is not None:
        admin.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(
            new, sql.Literal(target["comment"])))
    for entry in target["settings"]:
        for item in entry.get("config") or []:
            name, _, value = str(item).partition("=")
            setting = sql.SQL(".").join(sql.Identifier(p) for p in name.split("."))
            if entry.get("role"):
                statement = sql.SQL("ALTER ROLE {} IN DATABASE {} SET {} TO {}").format(
                    sql.Identifier(entry["role"]), new, setting, _setting_value(name, value))
            else:
                statement = sql.SQL("ALTER DATABASE {} SET {} TO {}").format(
                    new, setting, _setting_value(name, value))
            admin.execute(statement)
    if not target["default_acl"]:
        admin.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(new))
        for grant in target["acl"]:
            grantee = sql.Identifier(grant["grantee"]) if grant["grantee"] else \
                sql.SQL("PUBLIC")
            admin.execute(sql.SQL("GRANT {} ON DATABASE {} TO {}{}").format(
                sql.SQL(grant["privilege"]), new, grantee,
                sql.SQL(" WITH GRANT OPTION") if grant["grantable"] else sql.SQL("")))


# -- the swap and its journal ----------------------------------------------------------------
class Journal:
    """What an import has in flight, in ``<stack>/.kompose-import.json``: the names and the
    step it reached, written (and fsynced) before each step, removed when the import is
    over. A kompose killed half-way leaves it for :func:`recover`."""

    def __init__(self, stack: Stack, dry_run: bool = False) -> None:
        self.path = stack.path / JOURNAL_NAME
        self.dry_run = dry_run
        self.data: dict[str, Any] = {}
        self.pending = False  # something is left for the next command to finish

    def write(self, **changes: Any) -> None:
        self.data.update(changes)
        if self.dry_run:
            return
        self.data.setdefault("pid", os.getpid())
        self.data.setdefault("started", datetime.now(timezone.utc).isoformat(timespec="seconds"))
        tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
        with new_private_file(tmp) as handle:
            handle.write(json.dumps(self.data).encode() + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)

    def clear(self) -> None:
        if self.dry_run:
            return
        self.path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            _fsync_dir(self.path.parent)

    @staticmethod
    def read(stack: Stack) -> dict[str, Any] | None:
        path = stack.path / JOURNAL_NAME
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StepError(f"cannot read {path}: {exc.strerror or exc}") from None
        with os.fdopen(fd, "rb") as handle:
            try:
                data = json.loads(handle.read(65536))
            except ValueError:
                raise StepError(f"{path} is not a kompose import journal",
                                hint="look at it, then remove it") from None
        if not isinstance(data, dict) or not {"target", "scratch", "aside", "phase"} <= set(data):
            raise StepError(f"{path} is not a kompose import journal",
                            hint="look at it, then remove it")
        return data


def _swap(admin: Admin, journal: Journal, target: str, scratch: str, aside: str,
          info: dict[str, Any] | None, run: StackRun) -> bool:
    """Replace ``target`` by the loaded ``scratch``; on any failure ``target`` is restored.
    True when the scratch database now is the target."""
    from psycopg import sql

    tgt, new, old = sql.Identifier(target), sql.Identifier(scratch), sql.Identifier(aside)
    if info is None:
        journal.write(phase="rename-in")
        _retry(admin, scratch, sql.SQL("ALTER DATABASE {} RENAME TO {}").format(new, tgt))
        return True
    # No new sessions, then end the current ones; a client that reconnects in between is
    # ended again, for at most SWAP_WAIT_SECONDS.
    journal.write(phase="connections-off")
    try:
        admin.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(tgt))
    except StepError:
        # Refused (a lock timeout): the target is as it was, nothing is in flight. Said in
        # the journal only when the server confirms it, so that a lost connection still
        # leaves the step for recover().
        with contextlib.suppress(StepError):
            rows = admin.query(sql.SQL("SELECT datallowconn FROM pg_database WHERE datname = "
                                       "{}").format(sql.Literal(target)))
            if rows and bool(rows[0]["datallowconn"]) == bool(info["datallowconn"]):
                journal.write(phase="load")
        raise
    try:
        journal.write(phase="rename-aside")
        _retry(admin, target, sql.SQL("ALTER DATABASE {} RENAME TO {}").format(tgt, old))
    except StepError:
        with contextlib.suppress(StepError):
            _allow(admin, target, info)
            journal.write(phase="load")
        raise
    try:
        journal.write(phase="rename-in")
        _retry(admin, scratch, sql.SQL("ALTER DATABASE {} RENAME TO {}").format(new, tgt))
    except StepError:
        with contextlib.suppress(StepError):
            admin.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(old, tgt))
            _allow(admin, target, info)
            journal.write(phase="load")
        raise
    journal.write(phase="drop-old")
    if not info["datallowconn"]:
        admin.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(tgt))
    try:
        drop(admin, aside)
    except StepError as exc:
        journal.pending = True
        run.note(f"the replaced copy {aside} could not be dropped yet ({exc.message}); "
                 f"the next db command for this stack drops it")
    return True


def _allow(admin: Admin, target: str, info: dict[str, Any] | None) -> None:
    from psycopg import sql

    if info is None or info.get("datallowconn", True):
        admin.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(
            sql.Identifier(target)))


def _terminate(admin: Admin, database: str) -> None:
    """End the sessions on ``database`` that this role may end. (Not DROP ... WITH (FORCE):
    for a non-superuser that fails outright when an autovacuum worker is on the database,
    which a freshly loaded one often has; a plain DROP stops autovacuum by itself.)"""
    from psycopg import sql

    admin.query(sql.SQL(
        "SELECT pg_terminate_backend(pid) AS ended FROM pg_stat_activity WHERE datname = {}"
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


def _drop_quietly(admin: Admin, database: str, run: StackRun, journal: Journal) -> None:
    try:
        if _exists(admin, database):
            # Whatever happened, no scratch database outlives the import.
            drop(admin, database)
    except StepError as exc:
        run.note(f"could not drop the scratch database {database} ({exc.message}); the next "
                 f"db command for this stack drops it")
        journal.pending = True
        return
    if journal.data.get("phase") == "load" and not journal.pending:
        # The target was never touched (or was put back) and the scratch is gone: nothing
        # is in flight, even when the import ends with an error.
        journal.clear()


def _exists(admin: Admin, name: str) -> bool:
    from psycopg import sql

    return bool(admin.query(sql.SQL("SELECT 1 AS found FROM pg_database WHERE datname = {}")
                            .format(sql.Literal(name))))


# -- recovery ------------------------------------------------------------------------------
def _with_recovery(ctx: RunContext, stack: Stack, env: StackEnv, command: str,
                   main: Callable[[StackRun], None],
                   hook_args: Callable[[StackRun, str], Sequence[str]],
                   files: Sequence[str] = ()) -> StackResult:
    """A db command's pipeline, after putting right an import that was interrupted."""
    def guarded(run: StackRun) -> None:
        if Journal.read(stack) is not None:
            recover(run)
            if run.result.status != "success":
                return
        main(run)

    from kompose_py.pgaccess import pg_hook_env

    return run_with_hooks(ctx, stack, env, command, guarded, hook_args,
                          hook_env=pg_hook_env(env.values), files=files)


def recover(run: StackRun) -> None:
    """Put right what an interrupted import left: the journal says which names; the server
    says how far the swap got. The target is put back (or the finished swap completed), the
    scratch database dropped, connections allowed again; each action is said."""
    from psycopg import sql

    from kompose_py.pgadmin import PlanAdmin

    ctx, stack = run.ctx, run.stack
    journal_data = Journal.read(stack)
    access = access_for(ctx, stack, run.env)
    admin: Admin = PlanAdmin(run.note) if ctx.dry_run else \
        access.admin(ctx.runner, run.env, stack.path, run.note)
    try:
        target = journal_data["target"] if journal_data else access.db.name
        leftovers = _leftovers(admin, target)
        if journal_data:
            leftovers.setdefault("new", set()).add(journal_data["scratch"])
            leftovers.setdefault("old", set()).add(journal_data["aside"])
        phase = journal_data["phase"] if journal_data else None
        run.note(f"an import of {target} was interrupted"
                 + (f" at step {phase!r}" if phase else "") + "; recovering")
        target_exists = _exists(admin, target)
        olds = sorted(n for n in leftovers.get("old", ()) if _exists(admin, n))
        news = sorted(n for n in leftovers.get("new", ()) if _exists(admin, n))
        tgt = sql.Identifier(target)
        if not target_exists and olds:
            old = olds.pop(0)
            run.note(f"state: {target} is missing, its previous copy is {old}: putting it back")
            admin.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                sql.Identifier(old), tgt))
            target_exists = True
            _allow(admin, target, journal_data and
                   {"datallowconn": journal_data.get("allow_connections", True)})
        elif target_exists and phase in ("connections-off", "rename-aside"):
            run.note(f"state: {target} is in place with new connections refused: allowing "
                     f"them again")
            _allow(admin, target, {"datallowconn": journal_data.get("allow_connections", True)}
                   if journal_data else None)
        for old in olds:
            if phase in ("rename-in", "drop-old") and target_exists:
                run.note(f"state: the import had completed; dropping the replaced copy {old}")
                drop(admin, old)
            else:
                run.note(f"state: {old} holds an earlier copy of {target}; kept (drop it with "
                         f"DROP DATABASE once you have checked it)")
        for new in news:
            run.note(f"state: dropping the scratch database {new}")
            drop(admin, new)
        if target_exists and phase in ("rename-in", "drop-old") and journal_data \
                and journal_data.get("allow_connections") is False:
            # The target refused new connections before the import; a kill between the swap
            # and the step that refuses them again left the loaded copy open. (At an earlier
            # step the target is the one that was there: whoever opened it since meant to.)
            rows = admin.query(sql.SQL("SELECT datallowconn FROM pg_database WHERE datname = "
                                       "{}").format(sql.Literal(target)))
            if rows and rows[0]["datallowconn"]:
                run.note(f"state: {target} refused new connections before the import: "
                         f"refusing them again")
                admin.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(
                    tgt))
        if not ctx.dry_run:
            Journal(stack).clear()
            run.note(f"{target} recovered")
    except StepError as exc:
        run.fail(f"recovering the interrupted import failed: {exc.message}")
    finally:
        admin.close()


def _leftovers(admin: Admin, target: str) -> dict[str, set[str]]:
    """Scratch (new) and aside (old) databases an import of ``target`` may have left."""
    from psycopg import sql

    stem = scratch_names(target, "0" * 8)[0].rsplit("_kompose_new_", 1)[0]
    found: dict[str, set[str]] = {}
    for row in admin.query(sql.SQL("SELECT datname FROM pg_database")):
        name = str(row["datname"])
        match = re.fullmatch(r"(.*)_kompose_(new|old)_[0-9a-f]{8}", name)
        if match and match[1] == stem:
            found.setdefault(match[2], set()).add(name)
    return found


def recover_command(ctx: RunContext, stack: Stack, env: StackEnv) -> StackResult:
    """db:recover: look for what an interrupted import left, journal or not, and put it
    right."""
    if not is_database_stack(env):
        return skipped(stack)

    def main(run: StackRun) -> None:
        if Journal.read(stack) is None:
            from kompose_py.pgadmin import PlanAdmin

            access = access_for(ctx, stack, run.env)
            admin: Admin = PlanAdmin(run.note) if ctx.dry_run else \
                access.admin(ctx.runner, run.env, stack.path, run.note)
            try:
                left = _leftovers(admin, access.db.name)
                target_there = ctx.dry_run or _exists(admin, access.db.name)
            finally:
                admin.close()
            if not left and target_there:
                run.note(f"nothing to recover: no interrupted import of {access.db.name}")
                return
        recover(run)

    from kompose_py.pgaccess import pg_hook_env

    return _locked(ctx, stack, "db:recover",
                   lambda: run_with_hooks(ctx, stack, env, "db:recover", main,
                                          lambda run, phase: [],
                                          hook_env=pg_hook_env(env.values)))


def interrupted_import(stack: Stack) -> str | None:
    """For listings and other commands: a line when an import of this stack was
    interrupted and not yet put right (read from the journal, no server needed)."""
    try:
        data = Journal.read(stack)
    except StepError as exc:
        return exc.message
    if data is None:
        return None
    return (f"interrupted import of {data['target']} (step {data['phase']}; leftovers "
            f"{data['scratch']}, {data['aside']}): run `kompose {stack.name} db:recover`")


# -- cleanup, list, shell ------------------------------------------------------------------
def cleanup(ctx: RunContext, stack: Stack, env: StackEnv, keep: int) -> StackResult:
    if not is_database_stack(env):
        return skipped(stack)
    db_name = env.values["DB_NAME"]

    def main(run: StackRun) -> None:
        dumps = complete_dumps(stack.path, db_name)
        incomplete = len(find_dumps(stack.path, db_name)) - len(dumps)
        doomed = dumps[:-keep] if keep else dumps
        for dump in doomed:
            if ctx.dry_run:
                run.note(f"would delete {dump.path.name}")
            else:
                dump.path.unlink(missing_ok=True)
                run.note(f"deleted {dump.path.name}")
        kept = len(dumps) - len(doomed)
        run.note(f"kept {kept} of {len(dumps)} complete dumps of {db_name}"
                 + (f"; {incomplete} incomplete left alone (see db:list)"
                    if incomplete else ""))

    from kompose_py.pgaccess import pg_hook_env

    # Under the lock: an import may be reading the very dump cleanup would delete.
    return _locked(ctx, stack, "db:cleanup",
                   lambda: run_with_hooks(ctx, stack, env, "db:cleanup", main,
                                          lambda run, phase: [],
                                          hook_env=pg_hook_env(env.values)))


@dataclass(frozen=True)
class DumpInfo:
    dump: Dump
    size: int
    age_seconds: float
    problem: str | None  # None for a complete dump


def list_dumps(stack: Stack, env: StackEnv) -> tuple[DbSettings | None, list[DumpInfo]]:
    db = settings_for(env) if is_database_stack(env) else None
    if db is None:
        return None, []
    now = datetime.now(timezone.utc)
    return db, [DumpInfo(d, d.path.stat().st_size, (now - d.timestamp).total_seconds(),
                         incomplete_reason(d.path))
                for d in find_dumps(stack.path, db.name)]


def shell(ctx: RunContext, stack: Stack, env: StackEnv, args: Sequence[str]) -> StackResult:
    """db:shell: psql on the stack's database wherever it lives; ``args`` go to psql."""
    if not is_database_stack(env):
        return skipped(stack)

    def main(run: StackRun) -> None:
        access = access_for(ctx, stack, run.env)
        terminal = ctx.interactive and sys.stdin.isatty()
        cmd = access.tool("psql", access.db.name, list(args), run.env, stack.path,
                          stdin=True, tty=terminal)
        run.run_command("psql", replace(cmd, foreground=terminal),
                        {"PGPASSWORD": ""} if access.db.password else None)

    from kompose_py.pgaccess import pg_hook_env

    return run_with_hooks(ctx, stack, env, "db:shell", main, lambda run, phase: list(args),
                          hook_env=pg_hook_env(env.values))
