"""``db:import``: choose the dump, load it into a scratch database, give it the target's own
settings, then swap it in for the target under a journal, between the stack's hooks.

The promise: an import refuses an incomplete dump before anything is touched, and never
touches the target before the dump has loaded completely into a scratch database: a plain dump
by psql in one transaction with ON_ERROR_STOP, every psql meta-command checked on the way
(postgres/scan.py); a custom or directory archive by ``pg_restore -j N --exit-on-error`` (no
single transaction needed: nobody but the import sees the scratch database). Only then is
the target swapped out, with a journal of each step in the stack folder, so that a crash
or SIGKILL half-way is put right by the next kompose command for that stack (recovery.py).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from argparse import Namespace
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

from kompose_py.db import transfer
from kompose_py.db.dblock import locked_import
from kompose_py.db.dumpfiles import chosen_dump, dump_folder, incomplete_reason
from kompose_py.db.journal import Journal
from kompose_py.db.lock import locked
from kompose_py.db.manifest import check_manifest
from kompose_py.db.postgres import carryover, catalog
from kompose_py.db.postgres.catalog import Admin
from kompose_py.db.postgres.formats import PLAIN, format_of
from kompose_py.db.postgres.tools import load_tuning, pg_error
from kompose_py.db.reach import AccessKind, ContainerAccess, open_admin, warm_admin
from kompose_py.db.recovery import with_recovery
from kompose_py.db.settings import is_database_stack, skipped
from kompose_py.envfiles import StackEnv
from kompose_py.errors import StepError, UsageError
from kompose_py.lifecycle import Produced, RunContext, StackRun
from kompose_py.results import StackResult
from kompose_py.runner.command import Outcome
from kompose_py.stacks import Stack


# -- import -------------------------------------------------------------------------------
def resolve_dump(given: str, cwd: Path, root: Path, stack: Stack,
                 dumps: Path | None = None) -> Path:
    """An explicit dump path: as typed (from the current directory), else under the root,
    else in the stack's dump folder (``dumps``: DB_DUMP_DIR's), else in the stack folder."""
    bases: list[Path] = list(dict.fromkeys(
        [cwd, root, *([dumps] if dumps else []), stack.path]))
    for base in bases:
        candidate = (base / given).resolve()
        if candidate.is_file() or (candidate.is_dir()
                                   and format_of(candidate).kind == "directory"):
            return candidate
    raise StepError(f"dump file {given!r} not found",
                    hint=f"looked in {', '.join(map(str, bases[:-1]))} and {bases[-1]}")


def _guarded_feed(path: Path, force: bool, removed: list[tuple[int, str]]
                  ) -> Callable[[IO[bytes]], None]:
    """psql's stdin: the dump (decompressed when .gz), every line checked for psql
    meta-commands before it is written (postgres/scan.py)."""
    from kompose_py.db.postgres.scan import MetaCommandGuard

    def feed(sink: IO[bytes]) -> None:
        guard = MetaCommandGuard(force)
        opener = format_of(path).open_sql
        assert opener is not None  # a plain dump
        with opener(path) as source:
            while chunk := source.read(1 << 20):
                for part in guard.parts(chunk):
                    sink.write(part)
            sink.write(guard.finish())
        removed.extend(guard.removed)

    return feed


def import_(ctx: RunContext, stack: Stack, env: StackEnv, dump: Path | None,
            force: bool = False, skip_unrestorable: bool = False,
            jobs: int | None = None) -> StackResult:
    if not is_database_stack(env):
        return skipped(stack)
    warm_admin(ctx)

    def body() -> StackResult:
        db_name = env.values["DB_NAME"]
        try:  # (under the lock: an export that was running has finished by now)
            chosen, passed_over = chosen_dump(dump, stack, env.values, db_name)
        except StepError as exc:
            return StackResult(stack.name, "failed", exit_code=1, message=exc.message)
        proof = DumpProof(chosen, force, checked=dump is None)
        if not _proof_may_wait(ctx, stack):
            refused = proof.refusal()
            if refused is not None:
                return StackResult(stack.name, "failed", exit_code=1, message=refused,
                                   files=[str(chosen)])

        def main(run: StackRun) -> Produced | None:
            for line in passed_over:
                run.warn(line)
            return locked_import(run, lambda access, confirm: _replace(
                run, access, confirm, proof, skip_unrestorable, jobs or default_jobs()))

        return with_recovery(ctx, stack, env, "db:import", main,
                             lambda run, phase: [str(chosen)], files=[str(chosen)])

    return locked(ctx, stack, "db:import", body, env.values)


class DumpProof:
    """Whether a dump may be loaded: complete (its format's check) and, when it has a
    manifest, the bytes the manifest says. Worked out in a thread from the moment the dump is
    chosen, so that reading a large dump overlaps opening the session, reading the target and
    creating the scratch database; its answer is waited for before any hook runs or any
    statement of the dump does (:meth:`refusal`)."""

    def __init__(self, dump: Path, force: bool, checked: bool = False) -> None:
        """``checked``: the dump was chosen as the newest complete one (checked already)."""
        import threading

        self.dump, self.force, self.checked = dump, force, checked
        self._answer: tuple[str | None, str | None, str] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="dump-proof", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        try:
            self._answer = self._checks()
        except BaseException as exc:  # raised where the answer is waited for, not printed here
            self._error = exc

    def _checks(self) -> tuple[str | None, str | None, str]:
        # [manifest] a dump whose manifest says other bytes is refused before anything is
        # touched; no manifest is said, not refused
        manifest, refusal, said = check_manifest(self.dump)
        # Bytes that match the manifest's sha256 are those the export checked complete before
        # it wrote the manifest: checking again would only repeat it, and for a compressed
        # dump that means inflating all of it (0.4 s for a 17 MB directory archive of 600 MB).
        # A plain dump's trailer is read anyway: that costs nothing.
        repeat = manifest is None or refusal is not None or format_of(self.dump) is PLAIN
        reason = incomplete_reason(self.dump) if repeat and not self.checked else None
        return reason, refusal, said

    def _wait(self) -> tuple[str | None, str | None, str]:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._answer is not None
        return self._answer

    def refusal(self) -> str | None:
        """Why the dump must not be loaded (one line, for the stack's result), or None."""
        reason, refusal, _ = self._wait()
        name = self.dump.name
        if reason is not None and not self.force:
            return (f"refusing {name}: {reason}; nothing was touched (--force imports it "
                    f"anyway, still through a scratch database)")
        if refusal is not None and not self.force:
            return f"refusing {name}: {refusal}; nothing was touched (--force imports it anyway)"
        return None

    def say(self, run: StackRun) -> None:
        """What the manifest check found, once the dump is accepted."""
        _, refusal, said = self._wait()
        if refusal is not None:  # [manifest]
            run.warn(f"--force: {refusal}")
        else:
            run.note(said)


def _proof_may_wait(ctx: RunContext, stack: Stack) -> bool:
    """Whether the dump's proof may be waited for just before the load instead of before the
    stack's pipeline: only when the import has no hook at all (a refused dump then runs no
    hook either way, as before) and is not a dry-run (whose plan reads in order)."""
    from kompose_py import hooks

    return not ctx.dry_run and not any(
        hooks.hooks_for(phase, "db:import", ctx.root_hooks, stack.hooks_file)
        for phase in ("pre", "post", "error", "finally"))


def default_jobs() -> int:
    """pg_restore's processes when --jobs is not given: the CPUs, at most 4 (more rarely
    helps one server, and each is a connection)."""
    return max(1, min(os.cpu_count() or 1, 4))


def _replace(run: StackRun, access: AccessKind, confirm: Callable[[], None], proof: DumpProof,
             skip_unrestorable: bool, jobs: int = 1) -> Produced | None:
    """Load the dump into a scratch database created like the target (its owner, encoding,
    locale), give it every database-level property of the target, then swap it in for the
    target in one transaction, journaling each step. ``confirm()``: the advisory lock, waited
    for before the first change; ``proof``: the dump's checks, waited for before the load."""
    ctx = run.ctx
    dump, force = proof.dump, proof.force
    db = access.db
    run.note(f"database {db.name} via {access.describe()}")
    scratch, aside = catalog.scratch_names(db.name, secrets.token_hex(4))
    admin = open_admin(ctx, access, run)
    journal = Journal(run.stack, dry_run=ctx.dry_run)
    swapped = False
    try:
        facts = _facts(admin, db.name)
        if facts is not None and not _carryable(run, facts, skip_unrestorable):
            return None
        elif ctx.dry_run:
            # A dry-run asks the server nothing: its plan is that of a target that exists.
            run.note(f"a real run reads {db.name}'s owner, locale, privileges and settings "
                     f"first, and refuses, touching nothing, what {db.user or 'its role'} "
                     f"could not put back")
        confirm()
        journal.write(target=db.name, scratch=scratch, aside=aside, phase="load",
                      allow_connections=facts["allow_connections"] if facts else True)
        admin.execute(_sql(carryover.create_scratch(facts, scratch) if facts else
                           f"CREATE DATABASE {carryover.ident(scratch)} TEMPLATE template0"))
        try:
            refused = proof.refusal()  # (already known when the stack has hooks)
            if refused is not None:
                run.fail(refused)
                return None
            proof.say(run)
            removed: list[tuple[int, str]] = []
            # Only pg_restore's sessions: measured on a 600 MB archive it took 0.25 s off the
            # import; on psql's one-transaction load of a plain dump it gained nothing.
            loaded = _restore(run, access, scratch, dump, jobs, load_tuning(
                run.env, facts["server_version"] if facts else None)) \
                if format_of(dump).archive \
                else _load(run, access, scratch, dump, force, removed)
            if loaded and not run.interrupted():
                for line, command in removed:
                    run.note(f"--force: left out line {line} of {dump.name} (psql "
                             f"\\{command})")
                if facts:
                    steps, dropped = carryover.carry_over(facts, scratch)
                    for step in steps:
                        admin.execute(_sql(step.sql))
                    for left_out in dropped:
                        run.warn(f"--skip-unrestorable: {left_out}")
                elif ctx.dry_run:
                    run.note(f"would give {scratch} {db.name}'s owner, privileges (with their "
                             f"grantors), settings of every role, connection limit and comment")
                if not run.interrupted():
                    # From here on the swap runs to its end, signals or not: each step is a
                    # fact in the journal, and stopping half-way is what would lose data.
                    # (A dry-run's plan is the swap of a target that exists.)
                    swap_facts = facts if facts is not None or not ctx.dry_run \
                        else {"allow_connections": True}
                    swapped = _swap(admin, journal, db.name, scratch, aside, swap_facts, run)
        finally:
            if not swapped:  # (a dry-run's plan admin knows of no scratch database)
                _drop_quietly(admin, scratch, run, journal)
        if not journal.pending:
            journal.clear()
    finally:
        admin.close()
    if swapped and not ctx.dry_run:
        run.note(f"{db.name} replaced by {dump.name}")
    return Produced(committed=swapped)


def _sql(text: str) -> Any:
    """Statement text (carryover.py quotes every name and value itself) as Admin takes it."""
    from psycopg import sql

    return sql.SQL(text)  # quoted text, not a template


def _facts(admin: Admin, name: str) -> dict[str, Any] | None:
    """The target's database-level properties and the connecting role's rights (None: no such
    database, or a dry-run)."""
    rows = admin.query(_sql(carryover.facts_query(name)))
    if not rows:
        return None
    import json

    return {key: json.loads(value) if key in _JSON_COLUMNS and isinstance(value, str)
            else value for key, value in rows[0].items()}


_JSON_COLUMNS = frozenset({"acl", "settings", "roles", "params"})


def _carryable(run: StackRun, facts: dict[str, Any], skip_unrestorable: bool) -> bool:
    """Before anything is created or loaded: what the connecting role could not put back
    fails the import, one line each (--skip-unrestorable goes on without what can be left
    out, and lists it). False when the import must not go on."""
    found = carryover.blockers(facts)
    if skip_unrestorable:
        found = [b for b in found if not b.waivable]
    if not found:
        return True
    for blocker in found:
        run.note(f"cannot carry over: {blocker.line}")
    waivable = all(b.waivable for b in found)
    run.fail(f"{len(found)} propert{'y' if len(found) == 1 else 'ies'} of database "
             f"{facts['name']} cannot be put back as {facts['me']}: "
             + " | ".join(b.line for b in found) + "; nothing was touched"
             + (" (--skip-unrestorable imports without them and lists them)" if waivable
                else ""))
    return False


def _load(run: StackRun, access: AccessKind, scratch: str, dump: Path, force: bool,
          removed: list[tuple[int, str]]) -> bool:
    cmd = access.tool("psql", scratch,
                      ["-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction"],
                      run.env, run.stack.path, stdin=True)
    cmd = replace(cmd, stdout="null", capture_stderr=True,
                  feeder=_guarded_feed(dump, force, removed))

    def explain(outcome: Outcome) -> str | None:
        if not outcome.stderr_tail:
            return None
        return "the dump did not load: " + pg_error(outcome.stderr_tail, access.db, access.mode,
                                                    access.describe())

    outcome = run.run_command("psql", cmd, {"PGPASSWORD": ""} if access.db.password else None,
                              suffix=f" < {dump.name} (fed by kompose, psql meta-commands "
                                     f"checked)", explain=explain)
    return outcome.ok


def _restore(run: StackRun, access: AccessKind, scratch: str, dump: Path, jobs: int,
             env: Mapping[str, str] | None = None) -> bool:
    """pg_restore of a custom or directory archive into ``scratch``. In a container: a custom
    archive streams in on stdin with one job; a directory (or more jobs, which need a
    seekable file) is copied into a private temporary folder there first. ``env``: the
    load's environment (the run's by default)."""
    tool_env = run.env if env is None else env
    fmt = format_of(dump)
    options = ["--exit-on-error", f"--jobs={jobs}"]
    prefix = {"PGPASSWORD": ""} if access.db.password else None

    def explain(outcome: Outcome) -> str | None:
        if not outcome.stderr_tail:
            return None
        return "the dump did not load: " + pg_error(outcome.stderr_tail, access.db, access.mode,
                                                    access.describe())

    def pg_restore(path: str | None) -> bool:
        cmd = access.tool("pg_restore", scratch, options if path is not None
                          else ["--exit-on-error"], tool_env, run.stack.path,
                          stdin=path is None)
        cmd = replace(cmd, argv=cmd.argv + ((path,) if path is not None else ()),
                      stdout="null", capture_stderr=True,
                      feeder=None if path is not None else _copy_feed(dump))
        shown = "" if path is not None else f" < {dump.name}"
        return run.run_command("pg_restore", cmd, prefix, suffix=shown, explain=explain).ok

    if not isinstance(access, ContainerAccess):
        return pg_restore(str(dump))
    if fmt.kind == "custom" and jobs == 1:
        return pg_restore(None)
    with transfer.container_folder(run, access) as folder:
        copied = run.run_command("copy", transfer.tar_in(access, run, dump, folder, "dump"),
                                 suffix=f" < {dump.name}", explain=_copy_error)
        if not copied.ok or run.interrupted():
            return False
        return pg_restore(f"{folder}/dump")


def _copy_feed(path: Path) -> Callable[[IO[bytes]], None]:
    def feed(sink: IO[bytes]) -> None:
        with open(path, "rb") as source:
            while chunk := source.read(1 << 20):
                sink.write(chunk)
    return feed


def _copy_error(outcome: Outcome) -> str | None:
    from kompose_py.runner.command import failure_line

    return "cannot copy the dump into the container: " + failure_line(
        outcome.stderr_tail, outcome.error or f"tar exited {outcome.exit_code}",
        strip_marker=True)


def _swap(admin: Admin, journal: Journal, target: str, scratch: str, aside: str,
          facts: dict[str, Any] | None, run: StackRun) -> bool:
    """Replace ``target`` by the loaded ``scratch``: both renames in one transaction, so the
    target's name always names one complete database, whatever is killed when. On a failure
    the target is as it was. True when the scratch database now is the target."""
    if facts is None:
        journal.write(phase="swap")
        catalog.rename(admin, scratch, target)
        journal.write(phase="drop-old")
        return True
    # No new sessions on the target, then end the current ones; a client that reconnects in
    # between is ended again, for at most SWAP_WAIT_SECONDS.
    journal.write(phase="connections-off")
    if facts["allow_connections"]:
        try:
            catalog.refuse_connections(admin, target)
        except StepError:
            # Refused (a lock timeout): the target is as it was, nothing is in flight. Said
            # in the journal only when the server confirms it, so that a lost connection
            # still leaves the step for recovery.
            with contextlib.suppress(StepError):
                if catalog.allows_connections(admin, target):
                    journal.write(phase="load")
            raise
    try:
        journal.write(phase="swap")
        catalog.swap(admin, target, scratch, aside)
    except StepError:
        with contextlib.suppress(StepError):
            catalog.allow(admin, target, {"datallowconn": facts["allow_connections"]})
            journal.write(phase="load")
        raise
    journal.write(phase="drop-old")
    try:
        catalog.drop(admin, aside)
    except StepError as exc:
        journal.pending = True
        run.note(f"the replaced copy {aside} could not be dropped yet ({exc.message}); "
                 f"the next db command for this stack drops it")
    return True


def _drop_quietly(admin: Admin, database: str, run: StackRun, journal: Journal) -> None:
    try:
        if catalog.exists(admin, database):
            # Whatever happened, no scratch database outlives the import.
            catalog.drop(admin, database)
    except StepError as exc:
        run.note(f"could not drop the scratch database {database} ({exc.message}); the next "
                 f"db command for this stack drops it")
        journal.pending = True
        return
    if journal.data.get("phase") == "load" and not journal.pending:
        # The target was never touched (or was put back) and the scratch is gone: nothing
        # is in flight, even when the import ends with an error.
        journal.clear()


def prepare_import(options: Namespace, root: Path, selected: Sequence[Stack],
                   envs: Mapping[str, StackEnv]) -> None:
    """db:import FILE: one stack only, and the file must be there (before anything runs)."""
    given_dump(options, root, selected, envs, "db:import",
               "name one stack, or leave out the file to load each stack's newest dump")


def given_dump(options: Namespace, root: Path, selected: Sequence[Stack],
               envs: Mapping[str, StackEnv], command: str, hint: str) -> None:
    """``options.dump``: the FILE a db command was given, resolved before anything runs
    (None without one); a usage error when the pattern selects several stacks or the file is
    not there."""
    options.dump = None
    if options.file is None:
        return
    if len(selected) != 1:
        names = ", ".join(s.name for s in selected)
        raise UsageError(
            f"{command} {options.file}: a dump file can go to one stack only, and the "
            f"pattern selects {len(selected)} ({names})", hint=hint)
    try:
        options.dump = resolve_dump(options.file, Path.cwd(), root, selected[0],
                                    dump_folder(selected[0], envs[selected[0].name].values))
    except StepError as exc:
        raise UsageError(exc.message, exc.hint) from None


def import_command(ctx: RunContext, stack: Stack, env: StackEnv, options: Namespace
                   ) -> StackResult:
    """db:import (commands.py)."""
    return import_(ctx, stack, env, options.dump, options.force, options.skip_unrestorable,
                   options.jobs)
