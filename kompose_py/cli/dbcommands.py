"""Arguments of the db:* commands, checked before anything runs, and their jobs."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from kompose_py import database
from kompose_py.cli.commands import Job, JobFactory
from kompose_py.envfiles import StackEnv
from kompose_py.errors import StepError, UsageError
from kompose_py.pipeline import RunContext
from kompose_py.stacks import Stack


def _flags(command: str, args: Sequence[str], allowed: dict[str, bool]) -> tuple[dict[str, str],
                                                                                 list[str]]:
    """--flag / --flag VALUE / --flag=VALUE for ``allowed`` ({name: takes_value})."""
    found: dict[str, str] = {}
    positional: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-"):
            name, eq, value = arg.partition("=")
            if name not in allowed:
                known = ", ".join(allowed) or "none"
                raise UsageError(f"{command}: unknown option {name!r}", hint=f"options: {known}")
            if allowed[name] and not eq:
                if i + 1 >= len(args):
                    raise UsageError(f"{command}: {name} needs a value")
                i += 1
                value = args[i]
            found[name] = value
        else:
            positional.append(arg)
        i += 1
    return found, positional


def factory(command: str, args: Sequence[str]) -> JobFactory:
    if command == "db:export":
        flags, rest = _flags(command, args, {"--compress": False})
        if rest:
            raise UsageError(f"db:export takes no file, got {rest[0]!r}")
        compress = "--compress" in flags

        def export_job(ctx: RunContext, envs: dict[str, StackEnv],
                       selected: Sequence[Stack]) -> Job:
            progress = _progress_reporter(ctx)
            return lambda stack_ctx, stack: database.export(stack_ctx, stack, envs[stack.name],
                                                            compress, progress)

        return export_job

    if command == "db:import":
        flags, rest = _flags(command, args, {"--force": False})
        force = "--force" in flags
        if len(rest) > 1:
            raise UsageError("db:import takes at most one dump file")
        given = rest[0] if rest else None

        def import_job(ctx: RunContext, envs: dict[str, StackEnv],
                       selected: Sequence[Stack]) -> Job:
            dump: Path | None = None
            if given is not None:
                if len(selected) != 1:
                    names = ", ".join(s.name for s in selected)
                    raise UsageError(
                        f"db:import {given}: a dump file can go to one stack only, and the "
                        f"pattern selects {len(selected)} ({names})",
                        hint="name one stack, or leave out the file to load each stack's "
                             "newest dump")
                try:
                    dump = database.resolve_dump(given, Path.cwd(), ctx.root, selected[0])
                except StepError as exc:
                    raise UsageError(exc.message, exc.hint) from None
            return lambda stack_ctx, stack: database.import_(stack_ctx, stack, envs[stack.name],
                                                             dump, force)

        return import_job

    if command == "db:cleanup":
        flags, rest = _flags(command, args, {"--keep": True})
        if rest:
            raise UsageError(f"db:cleanup takes no file, got {rest[0]!r}")
        try:
            keep = int(flags.get("--keep", "1"))
        except ValueError:
            raise UsageError(f"db:cleanup --keep {flags['--keep']!r}: not a whole number") \
                from None
        if keep < 1:
            raise UsageError("db:cleanup --keep must be at least 1: the newest dump is "
                             "never deleted")
        return lambda ctx, envs, selected: (
            lambda stack_ctx, stack: database.cleanup(stack_ctx, stack, envs[stack.name], keep))
    if command == "db:recover":
        _flags(command, args, {})
        if args:
            raise UsageError(f"db:recover takes no arguments, got {args[0]!r}")
        return lambda ctx, envs, selected: (
            lambda stack_ctx, stack: database.recover_command(stack_ctx, stack,
                                                              envs[stack.name]))
    if command == "db:shell":
        psql_args = list(args[1:] if args[:1] == ["--"] else args)

        def shell_job(ctx: RunContext, envs: dict[str, StackEnv],
                      selected: Sequence[Stack]) -> Job:
            if len(selected) != 1:
                names = ", ".join(s.name for s in selected)
                raise UsageError(f"db:shell opens one database, and the pattern selects "
                                 f"{len(selected)} ({names})", hint="name one stack")
            return lambda stack_ctx, stack: database.shell(stack_ctx, stack, envs[stack.name],
                                                           psql_args)

        return shell_job
    raise AssertionError(f"no job for {command}")  # pragma: no cover - reports are direct


def _progress_reporter(ctx: RunContext) -> Callable[[str, int], None] | None:
    """A live byte counter, only for a person watching a terminal one stack at a time."""
    if not ctx.interactive or not sys.stderr.isatty():
        return None
    return ctx.reporter.progress
