"""A backend command for one stack (``up -d``, ``ps``, ``logs -f``), between its hooks."""

from __future__ import annotations

from collections.abc import Sequence

from kompose_py.backends.choose import backend_for
from kompose_py.envfiles import StackEnv
from kompose_py.lifecycle import Produced, RunContext, StackRun, run_with_hooks
from kompose_py.results import StackResult
from kompose_py.stacks import Stack


def run_stack_command(ctx: RunContext, stack: Stack, env: StackEnv,
                      args: Sequence[str]) -> StackResult:
    """``args`` is the command line after the pattern: ``["up", "-d"]``."""
    subcommand = args[0]

    def main(run: StackRun) -> Produced | None:
        backend = backend_for(run.env)
        if ctx.dry_run:
            names = [str(f.relative_to(stack.path)) if f.is_relative_to(stack.path) else str(f)
                     for f in backend.files(stack, run.env)]
            run.note(f"{backend.name} files: " + ", ".join(names))
        cmd = backend.command(stack, run.env, args, ctx.interactive)
        run.run_command(f"{backend.name} {subcommand}", cmd)
        return None

    # pre/post hooks get the full command's arguments: $1 = the subcommand.
    return run_with_hooks(ctx, stack, env, subcommand, main, lambda run, phase: list(args))
