"""``db:export``: pg_dump into a hidden partial file, checked for completeness by its format,
fsynced and published under its dump name (never replacing a file), between the stack's
hooks.

The promise: an export never leaves a file with a dump name unless pg_dump succeeded and the
file is a complete dump of its format. The stream goes to a hidden
``.<name>.<host>-<pid>.partial`` (mode 0600; what a killed kompose of this host left is
removed by the next export) that is checked, fsynced and hard-linked into place (a link never
overwrites, so two dumps in one second both survive), then unlinked. A directory archive is
a hidden partial folder, checked, fsynced file by file and renamed into place without
replacing anything (transfer.py).

Formats (``--format``, else ``DB_DUMP_FORMAT``, else plain) and compression (``--compress``)
are planned by postgres/formats.py from the version of the pg_dump that runs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import threading
import time
from argparse import Namespace
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kompose_py.backends.docker import engine_label, running_containers
from kompose_py.db import transfer
from kompose_py.db.compression import Compression, parse_compress
from kompose_py.db.dumpfiles import (
    dump_name,
    dump_size,
    export_folder,
    human_size,
    partial_name,
    sweep_leftovers,
)
from kompose_py.db.dumpproof import DumpEvidence
from kompose_py.db.lock import locked
from kompose_py.db.postgres.formats import (
    FORMATS,
    KINDS,
    DumpFormat,
    ExportPlan,
    Kind,
    compress_into,
    plan_export,
)
from kompose_py.db.postgres.tools import pg_error
from kompose_py.db.reach import (
    AccessKind,
    ContainerAccess,
    access_for,
    publishers,
    through,
    warm_admin,
)
from kompose_py.db.recovery import with_recovery
from kompose_py.db.settings import is_database_stack, skipped
from kompose_py.envfiles import StackEnv
from kompose_py.files import fsync_dir
from kompose_py.lifecycle import Produced, RunContext, StackRun
from kompose_py.results import StackResult
from kompose_py.runner.command import Command, Outcome, failure_line
from kompose_py.stacks import Stack


class _DumpWatcher:
    """While pg_dump writes: flush the file to disk as it grows (so the fsync before the
    rename has little left to do: ~0.3 s saved on a 500 MB dump here), show a live byte
    counter when someone watches a terminal, and, for a plain dump (a stream only ever
    appended to; a custom archive's table of contents is rewritten at its end), take the
    manifest's sha256 of the bytes as they land, so the manifest does not read the whole dump
    again once it is published."""

    FLUSH_EVERY = 32 << 20
    CHUNK = 1 << 20

    def __init__(self, path: Path, show: Callable[[int], None] | None,
                 follow: bool = False) -> None:
        self.path, self.show = path, show
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.sha: Any = None
        if follow:
            import hashlib

            self.sha = hashlib.sha256()
        self.hashed = 0
        self.failed = False

    def _catch_up(self, fd: int, size: int) -> None:
        while self.sha is not None and self.hashed < size:
            block = os.pread(fd, min(self.CHUNK, size - self.hashed), self.hashed)
            if not block:
                break
            self.sha.update(block)
            self.hashed += len(block)

    def _loop(self) -> None:
        fd = -1
        flushed = 0
        try:
            while True:
                ended = self.done.wait(0.25)
                if fd < 0:
                    with contextlib.suppress(OSError):
                        fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
                    if fd < 0:
                        if ended:
                            break
                        continue
                size = os.fstat(fd).st_size
                self._catch_up(fd, size)
                if ended:
                    break
                if size - flushed >= self.FLUSH_EVERY:
                    with contextlib.suppress(OSError):
                        os.fdatasync(fd)
                    flushed = size
                if self.show is not None:
                    self.show(size)
        except OSError:
            self.failed = True
        finally:
            if fd >= 0:
                os.close(fd)

    def digest(self, final: Path) -> tuple[str, int] | None:
        """(sha256, size) of the published dump when every byte of it was hashed on the way,
        else None (the manifest reads it again)."""
        if self.sha is None or self.failed:
            return None
        with contextlib.suppress(OSError):
            if final.stat().st_size == self.hashed:
                return self.sha.hexdigest(), self.hashed
        return None

    def __enter__(self) -> _DumpWatcher:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()


def _publish(tmp: Path, db_name: str, folder: Path, when: datetime, fmt: DumpFormat) -> Path:
    """Give the finished dump its name without ever replacing an existing file or folder."""
    if fmt.kind == "directory":
        transfer.fsync_tree(tmp)
    else:
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
    counter = 1
    while True:
        final = folder / dump_name(db_name, when, counter, fmt)
        if any((folder / dump_name(db_name, when, counter, other)).exists()
               for other in FORMATS if other is not fmt):
            # A dump of another format took this second: _2 keeps "the newest" the one
            # made last (exports of a stack hold its lock, one at a time).
            counter += 1
            continue
        try:
            if fmt.kind == "directory":
                transfer.rename_noreplace(tmp, final)
            else:
                os.link(tmp, final)
        except FileExistsError:
            counter += 1
            continue
        if fmt.kind != "directory":
            tmp.unlink()
        fsync_dir(folder)
        return final


def export(ctx: RunContext, stack: Stack, env: StackEnv, kind: Kind | None = None,
           spec: Compression | None = None, jobs: int = 1,
           progress: Callable[[str, int], None] | None = None) -> StackResult:
    """``kind`` None: the stack's DB_DUMP_FORMAT, else plain. ``spec`` None: no compression
    for plain, pg_dump's default inside an archive."""
    if not is_database_stack(env):
        return skipped(stack)
    if kind is None and _env_kind(env.values) is None:
        # Before any hook, naming where it was set (a pre hook's value is checked below).
        return StackResult(stack.name, "failed", exit_code=1, message=_bad_format(
            env.values, env.sources.get("DB_DUMP_FORMAT", "the environment")))
    warm_admin(ctx)  # psycopg, for the counting session at pg_dump's snapshot
    planned_paths: list[str] = []  # dry-run: the post hook is shown with the path it would get

    def main(run: StackRun) -> Produced | None:
        access = access_for(ctx, stack, run.env)
        run.note(f"database {access.db.name} via {access.describe()}")
        chosen = kind or _env_kind(run.env)
        if chosen is None:
            run.fail(_bad_format(run.env, "written by a pre hook"))
            return None
        if jobs > 1 and chosen != "directory":
            run.warn(f"--jobs {jobs} is for --format directory (pg_dump writes other formats "
                     f"with one job); this {chosen} dump is written with one")
        when = datetime.now(timezone.utc)
        started = time.monotonic()
        # The host's pg_dump may be older than the server: then the server's own container,
        # when one publishes DB_PORT, is tried (the first attempt decides only without one).
        retry_possible = access.mode == "host" and access.db.access != "host"
        plan = _plan(run, access, chosen, spec, jobs)
        if plan is None:
            return None
        final, outcome = _dump(run, access, when, plan, progress, tentative=retry_possible)
        if final is None and retry_possible:
            fallback = _newer_server_container(run, access) if outcome is not None and any(
                "server version mismatch" in line for line in outcome.stderr_tail) else None
            if fallback is None:
                run.settle()
            else:
                run.note(f"the host's pg_dump is older than the server; retrying via "
                         f"{fallback.describe()}")
                plan = _plan(run, fallback, chosen, spec, jobs)
                if plan is None:
                    return None
                final, _ = _dump(run, fallback, when, plan, progress)
        if final is None:
            return None
        if ctx.dry_run:
            run.note(f"would write {final.name} through a hidden temporary file, checked "
                     f"for completeness before it gets its name")
            planned_paths.append(str(final))
            return None
        run.note(f"wrote {final.name} ({human_size(dump_size(final))} in "
                 f"{time.monotonic() - started:.1f}s)")
        return Produced(files=(str(final),))

    def hook_args(run: StackRun, phase: str) -> list[str]:
        if phase == "post":
            return list(run.result.files[-1:] or planned_paths)
        return []

    return locked(ctx, stack, "db:export",
                  lambda: with_recovery(ctx, stack, env, "db:export", main, hook_args),
                  env.values)


def _bad_format(env: Mapping[str, str], where: str) -> str:
    return (f"DB_DUMP_FORMAT={env.get('DB_DUMP_FORMAT')!r} ({where}): expected one of "
            f"{', '.join(KINDS)}")


def _env_kind(env: Mapping[str, str]) -> Kind | None:
    value = (env.get("DB_DUMP_FORMAT") or "plain").strip().lower()
    return next((k for k in KINDS if k == value), None)


def _plan(run: StackRun, access: AccessKind, kind: Kind, spec: Compression | None,
          jobs: int) -> ExportPlan | None:
    """What this pg_dump writes; None (recorded) when it cannot write what was asked."""
    # pg_dump's option spelling changed with 16: asked whenever an option is given.
    major = transfer.pg_dump_major(run, access) if spec is not None else None
    where = "the host's pg_dump" if access.mode == "host" else \
        f"pg_dump in {access.describe()}"
    try:
        return plan_export(kind, spec, major, jobs, where)
    except ValueError as exc:
        run.fail(str(exc))
        return None


def _dump_command(run: StackRun, access: AccessKind, tmp: Path, plan: ExportPlan,
                  target: str | None = None) -> Command:
    """pg_dump writing into ``tmp`` (through stdout), or into the folder ``target`` (a
    directory archive: a path on the host, or in the container)."""
    extra = [*plan.options, "-f", target] if target is not None else list(plan.options)
    cmd = access.tool("pg_dump", access.db.name, extra, run.env, run.stack.path)
    if target is not None:
        return replace(cmd, stdin="null", stdout="null", capture_stderr=True)
    if plan.kompose_compresses is not None:
        return replace(cmd, stdin="null", drain=compress_into(plan.kompose_compresses)(tmp),
                       capture_stderr=True)
    return replace(cmd, stdin="null", stdout=tmp, capture_stderr=True)


def _run_dump(run: StackRun, access: AccessKind, tmp: Path, planned: Path, plan: ExportPlan,
              explain: Callable[[Outcome], str | None], tentative: bool) -> Outcome:
    """pg_dump, and for a directory archive made in the container, the copy out."""
    db = access.db
    prefix = {"PGPASSWORD": ""} if db.password else None
    shown = (planned if run.ctx.dry_run else tmp).name
    if plan.fmt.kind != "directory":
        return run.run_command("pg_dump", _dump_command(run, access, tmp, plan), prefix,
                               suffix=f" > {shown}{plan.shown}", explain=explain,
                               tentative=tentative)
    if not isinstance(access, ContainerAccess):
        return run.run_command("pg_dump", _dump_command(run, access, tmp, plan, str(tmp)),
                               prefix, explain=explain, tentative=tentative)
    with transfer.container_folder(run, access) as folder:
        outcome = run.run_command(
            "pg_dump", _dump_command(run, access, tmp, plan, f"{folder}/dump"), prefix,
            explain=explain, tentative=tentative)
        if not outcome.ok or run.interrupted():
            return outcome
        return run.run_command("copy", transfer.tar_out(access, run, f"{folder}/dump", tmp),
                               suffix=f" > {shown}/", explain=_tar_error)


def _tar_error(outcome: Outcome) -> str | None:
    return "cannot copy the dump out of the container: " + failure_line(
        outcome.stderr_tail, outcome.error or f"tar exited {outcome.exit_code}",
        strip_marker=True)


def _dump(run: StackRun, access: AccessKind, when: datetime, plan: ExportPlan,
          progress: Callable[[str, int], None] | None, tentative: bool = False
          ) -> tuple[Path | None, Outcome | None]:
    """One pg_dump into a hidden partial file, checked and published: (the dump, or None on
    failure, which is recorded in ``run``; pg_dump's outcome when it failed). In a dry-run:
    the name it would get."""
    stack, db, fmt = run.stack, access.db, plan.fmt
    dest = export_folder(stack, run.env, run.ctx.dry_run, run.warn)  # DB_DUMP_DIR
    planned = dest / dump_name(db.name, when, 1, fmt)
    tmp = dest / partial_name(planned.name)
    if not run.ctx.dry_run:  # (under the stack's lock: no export of this stack runs here)
        for name, why in sweep_leftovers(dest, db.name):
            run.note(f"removed {name}, {why}")
    show = (lambda size: progress(stack.name, size)) if progress else None
    directory = fmt.kind == "directory"

    def explain(outcome: Outcome) -> str | None:
        tail = outcome.stderr_tail
        if not tail and access.mode == "container" and outcome.exit_code in (126, 127) \
                and not directory:
            # docker exec says "executable file not found" on stdout: the dump file.
            with contextlib.suppress(OSError), open(tmp, "rb") as handle:
                tail = tuple(handle.read(500).decode(errors="replace").splitlines()[:1])
        return pg_error(tail, db, access.mode, access.describe()) if tail else None

    # Removed on every ending, a second signal's immediate one included.
    with run.ctx.runner.supervisor.temporary(tmp):
        try:
            # [manifest] the snapshot shared with pg_dump, row counts taken at it
            watcher = None if directory else _DumpWatcher(tmp, show, fmt.kind == "plain")
            with watcher or contextlib.nullcontext(), \
                    DumpEvidence(run, access, plan.kompose_compresses is not None) as evidence:
                plan = replace(plan, options=(*plan.options, *evidence.pg_dump_options()))
                outcome = _run_dump(run, access, tmp, planned, plan, explain, tentative)
                evidence.dumped(outcome.ok)
            if not outcome.ok:
                return None, outcome
            if run.ctx.dry_run:
                return planned, None
            reason = fmt.incomplete(tmp)
            if reason is not None and run.ctx.runner.supervisor.cancelled.is_set():
                run.stopped("interrupted before the dump was complete; nothing was published")
                return None, None
            if reason is not None:
                run.fail(f"pg_dump exited 0 but its output is not a complete dump ({reason}); "
                         f"nothing was published")
                return None, None
            try:
                final = _publish(tmp, db.name, dest, when, fmt)
            except OSError as exc:
                run.fail(f"cannot publish the dump in {dest}: {exc.strerror or exc}")
                return None, None
            # [manifest] <dump>.json, after the dump is published
            evidence.record(final, when, watcher.digest(final) if watcher else None)
            return final, None
        finally:
            with contextlib.suppress(OSError):
                # a partial dump must never look like a dump
                if tmp.is_dir() and not tmp.is_symlink():
                    shutil.rmtree(tmp)
                else:
                    tmp.unlink(missing_ok=True)


def _newer_server_container(run: StackRun, access: AccessKind) -> ContainerAccess | None:
    """Auto mode, host tools too old for the server: the container that publishes DB_PORT on
    this stack's engine, if exactly one does."""
    containers = running_containers(run.ctx.queries, run.env, run.stack.path)
    if isinstance(containers, str):
        return None
    found = publishers(access.db, containers)
    if len(found) != 1:
        return None
    return through(found[0], access.db, engine_label(run.env),
                   f"publishes port {access.db.port}")


def export_command(ctx: RunContext, stack: Stack, env: StackEnv, options: Namespace
                   ) -> StackResult:
    """db:export (commands.py)."""
    spec = parse_compress(options.compress) if options.compress is not None else None
    return export(ctx, stack, env, options.format, spec, options.jobs, _progress(ctx))


def _progress(ctx: RunContext) -> Callable[[str, int], None] | None:
    """A live byte counter, only for a person watching a terminal one stack at a time."""
    if not ctx.interactive or not sys.stderr.isatty():
        return None
    return ctx.reporter.progress
