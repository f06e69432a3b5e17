"""Keeping a stack's dumps and database usable day to day: cleanup, the dump listing's data
and an interactive psql (their rows are in commands.py)."""

from __future__ import annotations

import sys
from argparse import Namespace
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone

from kompose_py.db.dumpfiles import (
    Dump,
    complete_dumps,
    dump_size,
    find_dumps,
    incomplete_reason,
    remove_dump,
)
from kompose_py.db.lock import locked
from kompose_py.db.postgres.tools import pg_hook_env
from kompose_py.db.reach import access_for
from kompose_py.db.settings import DbSettings, is_database_stack, settings_for, skipped
from kompose_py.envfiles import StackEnv
from kompose_py.lifecycle import RunContext, StackRun, run_with_hooks
from kompose_py.results import StackResult
from kompose_py.stacks import Stack


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
                remove_dump(dump.path)
                run.note(f"deleted {dump.path.name}")
        kept = len(dumps) - len(doomed)
        run.note(f"kept {kept} of {len(dumps)} complete dumps of {db_name}"
                 + (f"; {incomplete} incomplete left alone (see db:list)"
                    if incomplete else ""))

    # Under the lock: an import may be reading the very dump cleanup would delete.
    return locked(ctx, stack, "db:cleanup",
                  lambda: run_with_hooks(ctx, stack, env, "db:cleanup", main,
                                         lambda run, phase: [], hook_env=pg_hook_env))


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
    return db, [DumpInfo(d, dump_size(d.path), (now - d.timestamp).total_seconds(),
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

    return run_with_hooks(ctx, stack, env, "db:shell", main, lambda run, phase: list(args),
                          hook_env=pg_hook_env)



def cleanup_command(ctx: RunContext, stack: Stack, env: StackEnv, options: Namespace
                    ) -> StackResult:
    """db:cleanup (commands.py)."""
    return cleanup(ctx, stack, env, options.keep)


def shell_command(ctx: RunContext, stack: Stack, env: StackEnv, options: Namespace
                  ) -> StackResult:
    """db:shell (commands.py)."""
    return shell(ctx, stack, env, options.args)
