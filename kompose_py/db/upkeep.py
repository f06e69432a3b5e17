"""Keeping a stack's dumps and database usable day to day: cleanup, the dump listing's data
and an interactive psql (their rows are in commands.py)."""

from __future__ import annotations

import sys
from argparse import Namespace
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from kompose_py.db.dumpfiles import (
    Dump,
    dump_folder,
    dump_problem,
    dump_size,
    find_dumps,
    readable_dump_folder,
    remove_dump,
    sweep_leftovers,
)
from kompose_py.db.lock import locked
from kompose_py.db.postgres.tools import pg_hook_env
from kompose_py.db.reach import access_for
from kompose_py.db.settings import DbSettings, is_database_stack, settings_for, skipped
from kompose_py.envfiles import StackEnv
from kompose_py.errors import KomposeError
from kompose_py.lifecycle import RunContext, StackRun, run_with_hooks
from kompose_py.results import StackResult
from kompose_py.stacks import Stack

if TYPE_CHECKING:
    from kompose_py.db.retention import Policy

# db:cleanup's options, as retention.py names its rules (a copy: db:list and db:shell load
# this module and need not load the rules).
RULES = ("last", "hourly", "daily", "weekly", "monthly", "yearly", "within")

# -- cleanup, list, shell ------------------------------------------------------------------
# restic 0.16 and later (today's restic): while a calendar or ``last`` rule has counts left,
# the oldest dump is kept too, so a young history is not thinned below what the policy asks
# for. Debian 12's restic 0.14 lacks that rule (retention.py's tests check both).
KEEP_OLDEST = True


def cleanup_policy(flags: Mapping[str, int | str | None], values: Mapping[str, str],
                   sources: Mapping[str, str]) -> tuple[Policy, str]:
    """The run's retention policy and where it comes from, in words. The ``--keep-*``
    options replace the ``DB_KEEP_*`` variables as a whole (see retention.parse_policy);
    neither: keep the newest dump, as kompose always did. ``sources``: where each variable
    was set (its layer). Raises ConfigError for a variable that does not read, naming where
    it was set."""
    from kompose_py.db.retention import ENV_NAMES, Policy, parse_policy

    policy = parse_policy(flags, values, sources)
    if any(v is not None for v in flags.values()):
        return policy, "from the command line"
    used = [var for var in ENV_NAMES.values() if values.get(var, "").strip()]
    if policy.empty:
        return Policy(last=1), "kompose's default: no --keep-* option" + (
            f", and {', '.join(used)} set no rule" if used else ", no DB_KEEP_* variable")
    layers: dict[str, list[str]] = {}
    for var in used:
        layers.setdefault(sources.get(var, "environment"), []).append(var)
    return policy, "from " + "; ".join(f"{', '.join(names)} ({layer})"
                                       for layer, names in layers.items())


def _hook_sources(env: StackEnv, values: Mapping[str, str]) -> dict[str, str]:
    """``env.sources``, with what a pre hook wrote (a value that differs) said so."""
    return {**env.sources, **{key: "written by a pre hook" for key, value in values.items()
                              if env.values.get(key) != value}}


def _reason_text(reason: str, when: datetime, policy: Policy) -> str:
    """restic's reason (``daily snapshot``) in words that name the bucket that keeps it
    (``daily 2025-01-07``), by the dump's UTC time."""
    oldest = reason.startswith("oldest ")
    rule = reason.removeprefix("oldest ").split()[0]
    utc = when.astimezone(timezone.utc)
    if rule == "within":
        return f"{reason} of the newest"
    if rule == "last":
        shown = "last" + ("" if policy.last == -1 else f" {policy.last}")
    else:
        iso = utc.isocalendar()
        bucket = {"hourly": f"{utc:%Y-%m-%d %H}h", "daily": f"{utc:%Y-%m-%d}",
                  "weekly": f"{iso[0]}-W{iso[1]:02d}", "monthly": f"{utc:%Y-%m}",
                  "yearly": f"{utc:%Y}"}[rule]
        shown = f"{rule} {bucket}"
    return f"{shown} (oldest dump, {rule} counts left)" if oldest else shown


def cleanup(ctx: RunContext, stack: Stack, env: StackEnv,
            flags: Mapping[str, int | str | None]) -> StackResult:
    if not is_database_stack(env):
        return skipped(stack)
    db_name = env.values["DB_NAME"]
    try:
        cleanup_policy(flags, env.values, env.sources)
    except KomposeError as exc:
        # Before any hook: a policy that does not read must not become "delete by default".
        return StackResult(stack.name, "failed", exit_code=1, message=exc.message)

    def main(run: StackRun) -> None:
        from kompose_py.db.manifest import manifest_path
        from kompose_py.db.retention import apply_policy

        try:  # again: a pre hook may have written DB_KEEP_* (as it may DB_DUMP_DIR)
            policy, source = cleanup_policy(flags, run.env, _hook_sources(env, run.env))
        except KomposeError as exc:
            run.fail(exc.message + "; nothing was deleted")
            return

        folder = readable_dump_folder(stack, run.env)
        for name, left_by in sweep_leftovers(folder, db_name, remove=not ctx.dry_run):
            run.note(f"{'would remove' if ctx.dry_run else 'removed'} {name}, {left_by}")
        found = find_dumps(folder, db_name)
        problems = {d.path: dump_problem(d.path) for d in found}
        dumps = [d for d in found if problems[d.path] is None]
        spoilt = sum(1 for problem in problems.values() if problem and problem.damaged)
        incomplete = len(found) - len(dumps) - spoilt
        run.note(f"policy: {policy} ({source})")
        decisions = apply_policy([(d, d.timestamp) for d in dumps], policy, KEEP_OLDEST)
        failed: list[str] = []
        # --json: each dump's fate, for scripts (oldest first, as the lines)
        fates: dict[str, list[dict[str, object]]] = {
            "kept": [], "deleted": [], "left_alone": [], "not_deleted": []}
        run.result.details = {"policy": str(policy), "policy_source": source,
                              "folder": str(folder), **fates}
        for dump in found:
            problem = problems[dump.path]
            if problem is not None:  # never counted, never deleted
                run.note(f"leave {dump.path.name}: " + (
                    problem.text if problem.damaged else f"not a complete dump ({problem.text})"))
                fates["left_alone"].append({"file": str(dump.path), "problem": problem.text})
        for decision in reversed(decisions):  # oldest first, as db:list shows them
            dump = decision.id
            manifest = manifest_path(dump.path)
            also = f" and {manifest.name}" if manifest.exists() else ""
            if decision.keep:
                reasons = [_reason_text(r, decision.time, policy) for r in decision.reasons]
                run.note(f"keep {dump.path.name}: " + ", ".join(reasons))
                fates["kept"].append({"file": str(dump.path), "reasons": reasons})
            elif ctx.dry_run:
                run.note(f"would delete {dump.path.name}{also}")
                fates["deleted"].append({"file": str(dump.path)})  # (a plan: would be)
            else:
                try:
                    remove_dump(dump.path)
                except OSError as exc:
                    why = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename
                                                      else "")
                    failed.append(f"{dump.path.name}: {why}")
                    run.note(f"could not delete {dump.path.name}: {why}")
                    fates["not_deleted"].append({"file": str(dump.path), "error": why})
                    continue
                run.note(f"deleted {dump.path.name}{also}")
                fates["deleted"].append({"file": str(dump.path)})
        kept = sum(d.keep for d in decisions)
        run.note(f"{'would keep' if ctx.dry_run else 'kept'} {kept} of {len(dumps)} complete "
                 f"dumps of {db_name}"
                 + "".join(f"; {n} {what} left alone (see db:list)" for n, what in (
                     (incomplete, "incomplete"), (spoilt, "not matching its manifest"))
                     if n))
        if failed:
            run.fail(f"could not delete {len(failed)} dump(s): {failed[0]}"
                     + (f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""))

    # Under the lock: an import may be reading the very dump cleanup would delete.
    return locked(ctx, stack, "db:cleanup",
                  lambda: run_with_hooks(ctx, stack, env, "db:cleanup", main,
                                         lambda run, phase: [], hook_env=pg_hook_env),
                  env.values)


@dataclass(frozen=True)
class DumpInfo:
    dump: Dump
    size: int
    age_seconds: float
    problem: str | None  # None for a complete dump
    damaged: bool = False  # the problem: its manifest says other bytes (else: not complete)


def list_dumps(stack: Stack, env: StackEnv) -> tuple[DbSettings | None, list[DumpInfo]]:
    db = settings_for(env) if is_database_stack(env) else None
    if db is None:
        return None, []
    now = datetime.now(timezone.utc)
    infos = []
    for d in find_dumps(dump_folder(stack, env.values), db.name):
        problem = dump_problem(d.path)
        infos.append(DumpInfo(d, dump_size(d.path), (now - d.timestamp).total_seconds(),
                              problem.text if problem else None,
                              bool(problem and problem.damaged)))
    return db, infos


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
    flags = {rule: getattr(options, f"keep_{rule}") for rule in RULES}
    return cleanup(ctx, stack, env, flags)


def shell_command(ctx: RunContext, stack: Stack, env: StackEnv, options: Namespace
                  ) -> StackResult:
    """db:shell (commands.py)."""
    return shell(ctx, stack, env, options.args)
