"""Putting right an import that was interrupted half-way (a kill, a power loss): the journal
says which names, the server says how far the swap got; ``db:recover`` looks even without a
journal. Every db command of a stack runs this first (:func:`with_recovery`)."""

from __future__ import annotations

import re
from argparse import Namespace
from collections.abc import Callable, Sequence
from typing import Any

from kompose_py.db.dblock import held
from kompose_py.db.journal import Journal
from kompose_py.db.lock import locked
from kompose_py.db.postgres import catalog
from kompose_py.db.postgres.catalog import Admin
from kompose_py.db.postgres.tools import pg_hook_env
from kompose_py.db.reach import access_for, open_admin
from kompose_py.db.settings import is_database_stack, skipped
from kompose_py.envfiles import StackEnv
from kompose_py.errors import StepError
from kompose_py.lifecycle import Produced, RunContext, StackRun, run_with_hooks
from kompose_py.results import StackResult
from kompose_py.stacks import Stack


# -- recovery ------------------------------------------------------------------------------
def with_recovery(ctx: RunContext, stack: Stack, env: StackEnv, command: str,
                  main: Callable[[StackRun], Produced | None],
                  hook_args: Callable[[StackRun, str], Sequence[str]],
                  files: Sequence[str] = ()) -> StackResult:
    """A db command's pipeline, after putting right an import that was interrupted."""
    def guarded(run: StackRun) -> Produced | None:
        if Journal.read(stack) is not None:
            recover(run)
            if run.result.status != "success":
                return None
        return main(run)

    return run_with_hooks(ctx, stack, env, command, guarded, hook_args,
                          hook_env=pg_hook_env, files=files)


def recover(run: StackRun) -> None:
    """Put right what an interrupted import left: the journal says which names; the server
    says how far the swap got. The target is put back (or the finished swap completed), the
    scratch database dropped, connections allowed again; each action is said."""
    ctx, stack = run.ctx, run.stack
    journal_data = Journal.read(stack)
    access = access_for(ctx, stack, run.env)
    # An import running elsewhere (another machine, a shared stack folder) holds the
    # database's advisory lock: its scratch copy is not a leftover, and nothing is touched.
    with held(run, access) as confirm:
        admin = open_admin(ctx, access, run)
        try:
            confirm()
        except StepError as exc:
            admin.close()
            run.fail(f"not recovering: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""))
            return
        _put_right(run, access.db.name, journal_data, admin)


def _put_right(run: StackRun, db_name: str, journal_data: dict[str, Any] | None,
               admin: Admin) -> None:
    ctx, stack = run.ctx, run.stack
    try:
        target = journal_data["target"] if journal_data else db_name
        leftovers = _leftovers(admin, target)
        if journal_data:
            leftovers.setdefault("new", set()).add(journal_data["scratch"])
            leftovers.setdefault("old", set()).add(journal_data["aside"])
        phase = journal_data["phase"] if journal_data else None
        what = "a db:verify of" if journal_data and journal_data.get("purpose") == "verify" \
            else "an import of"
        run.note(f"{what} {target} was interrupted"
                 + (f" at step {phase!r}" if phase else "") + "; recovering")
        target_exists = catalog.exists(admin, target)
        olds = sorted(n for n in leftovers.get("old", ()) if catalog.exists(admin, n))
        news = sorted(n for n in leftovers.get("new", ()) if catalog.exists(admin, n))
        if not target_exists and olds:
            old = olds.pop(0)
            run.note(f"state: {target} is missing, its previous copy is {old}: putting it back")
            catalog.rename(admin, old, target, retry=False)
            target_exists = True
            catalog.allow(admin, target, journal_data and
                          {"datallowconn": journal_data.get("allow_connections", True)})
        # The atomic swap (phase "swap") committed exactly when its aside copy exists.
        committed = target_exists and (phase in ("rename-in", "drop-old")
                                       or (phase == "swap" and bool(olds)))
        if not committed and target_exists and phase in ("connections-off", "rename-aside",
                                                         "swap"):
            run.note(f"state: {target} is in place with new connections refused: allowing "
                     f"them again")
            catalog.allow(admin, target,
                          {"datallowconn": journal_data.get("allow_connections", True)}
                          if journal_data else None)
        for old in olds:
            if committed:
                run.note(f"state: the import had completed; dropping the replaced copy {old}")
                catalog.drop(admin, old)
            else:
                run.note(f"state: {old} holds an earlier copy of {target}; kept (drop it with "
                         f"DROP DATABASE once you have checked it)")
        for new in news:
            run.note(f"state: dropping the scratch database {new}")
            catalog.drop(admin, new)
        # The target refused new connections before the import; a kill between the swap and
        # the step that refuses them again left the loaded copy open. (At an earlier step the
        # target is the one that was there: whoever opened it since meant to.)
        if committed and journal_data \
                and journal_data.get("allow_connections") is False \
                and catalog.allows_connections(admin, target):
            run.note(f"state: {target} refused new connections before the import: "
                     f"refusing them again")
            catalog.refuse_connections(admin, target)
        if not ctx.dry_run:
            Journal(stack).clear()
            run.note(f"{target} recovered")
    except StepError as exc:
        run.fail(f"recovering the interrupted import failed: {exc.message}")
    finally:
        admin.close()


def _leftovers(admin: Admin, target: str) -> dict[str, set[str]]:
    """Scratch (new) and aside (old) databases an import of ``target`` may have left."""
    stem = catalog.scratch_names(target, "0" * 8)[0].rsplit("_kompose_new_", 1)[0]
    found: dict[str, set[str]] = {}
    for name in catalog.database_names(admin):
        match = re.fullmatch(r"(.*)_kompose_(new|old)_[0-9a-f]{8}", name)
        if match and match[1] == stem:
            found.setdefault(match[2], set()).add(name)
    return found


def recover_command(ctx: RunContext, stack: Stack, env: StackEnv,
                    options: Namespace | None = None) -> StackResult:
    """db:recover: look for what an interrupted import left, journal or not, and put it
    right."""
    if not is_database_stack(env):
        return skipped(stack)

    def main(run: StackRun) -> None:
        if Journal.read(stack) is None:
            access = access_for(ctx, stack, run.env)
            admin = open_admin(ctx, access, run)
            try:
                left = _leftovers(admin, access.db.name)
                target_there = ctx.dry_run or catalog.exists(admin, access.db.name)
            finally:
                admin.close()
            if not left and target_there:
                run.note(f"nothing to recover: no interrupted import of {access.db.name}")
                return
        recover(run)

    return locked(ctx, stack, "db:recover",
                  lambda: run_with_hooks(ctx, stack, env, "db:recover", main,
                                         lambda run, phase: [], hook_env=pg_hook_env))


def interrupted_import(stack: Stack) -> str | None:
    """For listings and other commands: a line when an import of this stack was
    interrupted and not yet put right (read from the journal, no server needed)."""
    try:
        data = Journal.read(stack)
    except StepError as exc:
        return exc.message
    if data is None:
        return None
    if data.get("purpose") == "verify":  # a throwaway copy only, nothing set aside
        return (f"interrupted db:verify of {data['target']} (leftover {data['scratch']}): "
                f"run `kompose {stack.name} db:recover`")
    return (f"interrupted import of {data['target']} (step {data['phase']}; leftovers "
            f"{data['scratch']}, {data['aside']}): run `kompose {stack.name} db:recover`")

