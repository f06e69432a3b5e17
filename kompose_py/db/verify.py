"""``db:verify [FILE]``: prove that a dump restores, without touching the stack's database.

The dump (FILE, else the newest complete one) is checked against its manifest (size, sha256),
then restored into a throwaway database on the same server, created like the target (its
encoding and locale) and named as an import's scratch copy (``<db>_kompose_new_<token>``),
so that the recovery of an interrupted import knows it. The load is the one an import uses
(plain dumps: psql with ON_ERROR_STOP in one transaction through the meta-command guard;
archives: pg_restore --exit-on-error --jobs N); then each table's rows
are counted and compared with the counts the manifest recorded at pg_dump's snapshot. A
sha256 mismatch, a failed load or a count that differs fails the stack with the reason;
``--json`` carries the details (``details``). The throwaway database is dropped whatever
happens (a failure, Ctrl-C, SIGTERM); a SIGKILL leaves it to the next db command of the
stack, which reads the journal written before it was created, as after an interrupted import.

Dumps without a manifest (kompose.sh's, older kompose's) are verified by restore alone, and
the output says so. The stack's lock is held throughout: a cleanup cannot delete the dump
being read, and a recovery cannot drop the throwaway copy while it loads.
"""

from __future__ import annotations

import secrets
from argparse import Namespace
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kompose_py.db import manifest as mf
from kompose_py.db.dumpfiles import chosen_dump, incomplete_reason
from kompose_py.db.journal import Journal
from kompose_py.db.lock import locked
from kompose_py.db.manifest import check_manifest
from kompose_py.db.postgres import carryover, catalog
from kompose_py.db.postgres.catalog import Admin
from kompose_py.db.reach import AccessKind, access_for, open_admin
from kompose_py.db.recovery import with_recovery
from kompose_py.db.settings import is_database_stack, skipped
from kompose_py.db.snapshot import restored_counts
from kompose_py.envfiles import StackEnv
from kompose_py.errors import StepError
from kompose_py.lifecycle import Produced, RunContext, StackRun
from kompose_py.results import StackResult
from kompose_py.stacks import Stack

COMMAND = "db:verify"


def load_into(run: StackRun, access: AccessKind, database: str, dump: Path, jobs: int
              ) -> bool:
    """Load ``dump`` into ``database`` exactly as an import loads its scratch copy; False
    when it did not load (the step's failure is recorded in ``run``): plain SQL (also
    compressed) through psql (ON_ERROR_STOP, one transaction, psql meta-commands refused),
    a custom or directory archive through pg_restore --exit-on-error --jobs N."""
    from kompose_py.db.postgres.formats import format_of
    from kompose_py.db.restore import _load, _restore

    if format_of(dump).archive:
        return _restore(run, access, database, dump, jobs)
    removed: list[tuple[int, str]] = []
    return _load(run, access, database, dump, False, removed)


def verify(ctx: RunContext, stack: Stack, env: StackEnv, dump: Path | None,
           jobs: int | None = None) -> StackResult:
    if not is_database_stack(env):
        return skipped(stack)

    def body() -> StackResult:
        db_name = env.values["DB_NAME"]
        try:  # (under the lock: an export that was running has finished by now)
            chosen, passed_over = chosen_dump(dump, stack, env.values, db_name)
        except StepError as exc:
            return StackResult(stack.name, "failed", exit_code=1, message=exc.message)
        source, checked = chosen, dump is None

        def main(run: StackRun) -> Produced | None:
            for line in passed_over:
                run.warn(line)
            _verify(run, source, checked, jobs or default_jobs())
            return None

        return with_recovery(ctx, stack, env, COMMAND, main,
                             lambda run, phase: [str(source)], files=[str(source)])

    return locked(ctx, stack, COMMAND, body, env.values)


def default_jobs() -> int:
    from kompose_py.db.restore import default_jobs as import_default

    return import_default()


def _verify(run: StackRun, dump: Path, checked: bool, jobs: int) -> None:
    """``checked``: the dump was chosen as complete already (a gzip is inflated once)."""
    details: dict[str, Any] = {
        "dump": str(dump), "manifest": None, "sha256": "unchecked", "load": "not run",
        "row_counts": "unchecked", "tables": None, "differences": [], "database": None}
    run.result.details = details
    reason = None if checked else incomplete_reason(dump)
    if reason is not None:
        run.fail(f"{dump.name} is not a complete dump ({reason}); nothing was restored")
        return
    manifest, refusal, line = check_manifest(dump)
    if manifest is not None:
        details["manifest"] = str(mf.manifest_path(dump))
    if refusal is not None:
        # The bytes differ from the manifest, or the manifest itself cannot be used.
        details["sha256"] = "mismatch" if manifest is not None else "unusable manifest"
        run.fail(f"{dump.name} {refusal}; nothing was restored"
                 if refusal.startswith("does not") else
                 f"{dump.name}: {refusal}; nothing was restored")
        return
    if manifest is not None:
        details["sha256"] = "match"
        run.note(line)
    else:
        run.note(line + "; it is verified by restore alone")
    expected = manifest.row_counts if manifest is not None else None
    if manifest is not None and expected is None:
        details["row_counts"] = "unknown"
        run.note(f"the manifest has no row counts ({manifest.row_counts_error or 'unknown'}): "
                 f"verified by restore alone")
    ctx = run.ctx
    access = access_for(ctx, run.stack, run.env)
    db = access.db
    run.note(f"database {db.name} via {access.describe()}")
    scratch, aside = catalog.scratch_names(db.name, secrets.token_hex(4))
    details["database"] = scratch
    admin = open_admin(ctx, access, run)
    journal = Journal(run.stack, dry_run=ctx.dry_run)
    try:
        # Written before the throwaway database exists: a SIGKILL from here on is put right
        # by the next db command of this stack (recovery drops the scratch copy).
        journal.write(target=db.name, scratch=scratch, aside=aside, phase="load",
                      allow_connections=True, purpose="verify")
        try:
            admin.execute(_sql(_create(admin, db.name, scratch)))
            if run.interrupted():
                return
            if not load_into(run, access, scratch, dump, jobs):
                details["load"] = "failed"
                return
            details["load"] = "ok"
            if run.interrupted():
                return
            if ctx.dry_run:
                run.note(f"would count each table's rows in {scratch} and compare them with "
                         f"the manifest's")
                return
            actual = restored_counts(run, access, scratch)
            details["tables"] = len(actual)
            _compare(run, details, expected, actual, dump)
        finally:
            _drop(admin, scratch, run, journal)
    finally:
        admin.close()


def _compare(run: StackRun, details: dict[str, Any], expected: dict[str, int] | None,
             actual: dict[str, int], dump: Path) -> None:
    if expected is None:
        run.note(f"{dump.name} restores without error ({len(actual)} tables, "
                 f"{sum(actual.values())} rows)")
        return
    differences = [{"table": key, "expected": expected.get(key), "actual": actual.get(key)}
                   for key in sorted(expected.keys() | actual.keys())
                   if expected.get(key) != actual.get(key)]
    details["differences"] = differences
    if not differences:
        details["row_counts"] = "match"
        tables = "the one table" if len(actual) == 1 else f"all {len(actual)} tables"
        run.note(f"{dump.name} restores without error; the row counts of {tables} "
                 f"match the manifest ({sum(actual.values())} rows)")
        return
    details["row_counts"] = "differ"
    lines = mf.count_differences(expected, actual)
    shown = "; ".join(lines[:5]) + (f"; and {len(lines) - 5} more" if len(lines) > 5 else "")
    run.fail(f"{dump.name} restores, but the row counts of {len(lines)} "
             f"table{'s' if len(lines) != 1 else ''} differ from its manifest: {shown}")


def _sql(text: str) -> Any:
    from psycopg import sql

    return sql.SQL(text)  # quoted text (carryover.py quotes every name), not a template


def _create(admin: Admin, target: str, scratch: str) -> str:
    """CREATE DATABASE for the throwaway copy: the target's encoding, locale and provider
    (the load must meet the same rules as an import's), owned by the connecting role (who
    drops it again); from template0 when the target does not exist."""
    rows = admin.query(_sql(carryover.facts_query(target)))
    if not rows:
        return f"CREATE DATABASE {carryover.ident(scratch)} TEMPLATE template0"
    facts = rows[0]
    text = carryover.create_scratch(facts, scratch)
    owner = f" WITH OWNER {carryover.ident(str(facts['owner']))}"
    return text.replace(owner, " WITH", 1)


def _drop(admin: Admin, scratch: str, run: StackRun, journal: Journal) -> None:
    """Whatever happened: no throwaway database outlives the verification."""
    try:
        if catalog.exists(admin, scratch):
            catalog.drop(admin, scratch)
    except StepError as exc:
        run.warn(f"could not drop the throwaway database {scratch} ({exc.message}); the next "
                 f"db command for this stack drops it")
        return
    journal.clear()


def prepare_verify(options: Namespace, root: Path, selected: Sequence[Stack],
                   envs: Mapping[str, StackEnv]) -> None:
    """FILE: one stack only, and the file must be there (before anything runs)."""
    from kompose_py.db.restore import given_dump

    given_dump(options, root, selected, envs, COMMAND,
               "name one stack, or leave out the file to verify each stack's newest dump")


def verify_command(ctx: RunContext, stack: Stack, env: StackEnv, options: Namespace
                   ) -> StackResult:
    """db:verify (commands.py)."""
    return verify(ctx, stack, env, options.dump, options.jobs)
