"""``db:export``: pg_dump into a hidden partial file, checked for completeness by its format,
fsynced and published under its dump name (never replacing a file), between the stack's
hooks.

The promise: an export never leaves a file with a dump name unless pg_dump succeeded and the
file is a complete dump of its format. The stream goes to a hidden ``.<name>.partial`` (mode
0600) that is checked, fsynced and hard-linked into place (a link never overwrites, so two
dumps in one second both survive), then unlinked.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from argparse import Namespace
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from kompose_py.backends.docker import engine_label, running_containers
from kompose_py.db.dumpfiles import dump_name, human_size
from kompose_py.db.dumpproof import DumpEvidence
from kompose_py.db.lock import locked
from kompose_py.db.postgres.formats import GZIP, PLAIN, DumpFormat
from kompose_py.db.postgres.tools import pg_error
from kompose_py.db.reach import AccessKind, ContainerAccess, access_for, publishers, through
from kompose_py.db.recovery import with_recovery
from kompose_py.db.settings import is_database_stack, skipped
from kompose_py.envfiles import StackEnv
from kompose_py.files import fsync_dir
from kompose_py.lifecycle import Produced, RunContext, StackRun
from kompose_py.results import StackResult
from kompose_py.runner.command import Command, Outcome
from kompose_py.stacks import Stack


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


def _publish(tmp: Path, db_name: str, folder: Path, when: datetime, fmt: DumpFormat) -> Path:
    """Give the finished dump its name without ever replacing an existing file."""
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    counter = 1
    while True:
        final = folder / dump_name(db_name, when, counter, fmt)
        try:
            os.link(tmp, final)
        except FileExistsError:
            counter += 1
            continue
        tmp.unlink()
        fsync_dir(folder)
        return final


def export(ctx: RunContext, stack: Stack, env: StackEnv, fmt: DumpFormat,
           progress: Callable[[str, int], None] | None = None) -> StackResult:
    if not is_database_stack(env):
        return skipped(stack)
    planned_paths: list[str] = []  # dry-run: the post hook is shown with the path it would get

    def main(run: StackRun) -> Produced | None:
        access = access_for(ctx, stack, run.env)
        run.note(f"database {access.db.name} via {access.describe()}")
        when = datetime.now(timezone.utc)
        started = time.monotonic()
        # The host's pg_dump may be older than the server: then the server's own container,
        # when one publishes DB_PORT, is tried (the first attempt decides only without one).
        retry_possible = access.mode == "host" and access.db.access != "host"
        final, outcome = _dump(run, access, when, fmt, progress, tentative=retry_possible)
        if final is None and retry_possible:
            fallback = _newer_server_container(run, access) if outcome is not None and any(
                "server version mismatch" in line for line in outcome.stderr_tail) else None
            if fallback is None:
                run.settle()
            else:
                run.note(f"the host's pg_dump is older than the server; retrying via "
                         f"{fallback.describe()}")
                final, _ = _dump(run, fallback, when, fmt, progress)
        if final is None:
            return None
        if ctx.dry_run:
            run.note(f"would write {final.name} through a hidden temporary file, checked "
                     f"for completeness before it gets its name")
            planned_paths.append(str(final))
            return None
        run.note(f"wrote {final.name} ({human_size(final.stat().st_size)} in "
                 f"{time.monotonic() - started:.1f}s)")
        return Produced(files=(str(final),))

    def hook_args(run: StackRun, phase: str) -> list[str]:
        if phase == "post":
            return list(run.result.files[-1:] or planned_paths)
        return []

    return locked(ctx, stack, "db:export",
                  lambda: with_recovery(ctx, stack, env, "db:export", main, hook_args))


def _dump_command(run: StackRun, access: AccessKind, tmp: Path, fmt: DumpFormat,
                  extra: list[str]) -> Command:
    cmd = access.tool("pg_dump", access.db.name, extra, run.env, run.stack.path)
    if fmt.drain is not None:
        return replace(cmd, stdin="null", drain=fmt.drain(tmp), capture_stderr=True)
    return replace(cmd, stdin="null", stdout=tmp, capture_stderr=True)


def _dump(run: StackRun, access: AccessKind, when: datetime, fmt: DumpFormat,
          progress: Callable[[str, int], None] | None, tentative: bool = False
          ) -> tuple[Path | None, Outcome | None]:
    """One pg_dump into a hidden partial file, checked and published: (the dump, or None on
    failure, which is recorded in ``run``; pg_dump's outcome when it failed). In a dry-run:
    the name it would get."""
    stack, db = run.stack, access.db
    planned = stack.path / dump_name(db.name, when, 1, fmt)
    tmp = stack.path / f".{planned.name}.{os.getpid()}.partial"
    show = (lambda size: progress(stack.name, size)) if progress else None

    def explain(outcome: Outcome) -> str | None:
        tail = outcome.stderr_tail
        if not tail and access.mode == "container" and outcome.exit_code in (126, 127):
            # docker exec says "executable file not found" on stdout: the dump file.
            with contextlib.suppress(OSError), open(tmp, "rb") as handle:
                tail = tuple(handle.read(500).decode(errors="replace").splitlines()[:1])
        return pg_error(tail, db, access.mode, access.describe()) if tail else None

    # Removed on every ending, a second signal's immediate one included.
    with run.ctx.runner.supervisor.temporary(tmp):
        try:
            # [manifest] the snapshot shared with pg_dump, row counts taken at it
            with _DumpWatcher(tmp, show), DumpEvidence(run, access) as evidence:
                outcome = run.run_command(
                    "pg_dump", _dump_command(run, access, tmp, fmt,
                                             evidence.pg_dump_options()),
                    {"PGPASSWORD": ""} if db.password else None,
                    suffix=f" > {(planned if run.ctx.dry_run else tmp).name}{fmt.shown}",
                    explain=explain, tentative=tentative)
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
                final = _publish(tmp, db.name, stack.path, when, fmt)
            except OSError as exc:
                run.fail(f"cannot publish the dump in {stack.path}: {exc.strerror or exc}")
                return None, None
            evidence.record(final, when)  # [manifest] <dump>.json, after the dump is published
            return final, None
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)  # a partial dump must never look like a dump


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
    return export(ctx, stack, env, GZIP if options.compress else PLAIN, _progress(ctx))


def _progress(ctx: RunContext) -> Callable[[str, int], None] | None:
    """A live byte counter, only for a person watching a terminal one stack at a time."""
    if not ctx.interactive or not sys.stderr.isatty():
        return None
    return ctx.reporter.progress
