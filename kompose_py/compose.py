"""A Docker Compose subcommand for one stack, between its hooks."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence

from kompose_py.envfiles import StackEnv
from kompose_py.pipeline import RunContext, StackRun, run_with_hooks
from kompose_py.results import StackResult
from kompose_py.runner import Command
from kompose_py.stacks import Stack

# Subcommands that talk to the user; they keep the terminal when stacks run one at a time.
INTERACTIVE = frozenset({"exec", "run", "logs", "attach", "up", "watch"})


def compose_program(env: Mapping[str, str]) -> list[str]:
    """``docker compose`` unless KOMPOSE_COMPOSE_CMD names another (``podman compose``)."""
    return shlex.split(env.get("KOMPOSE_COMPOSE_CMD") or "docker compose")


def run_compose(ctx: RunContext, stack: Stack, env: StackEnv, args: Sequence[str]) -> StackResult:
    """``args`` is the compose command line after the pattern: ``["up", "-d"]``."""
    subcommand = args[0]

    def main(run: StackRun) -> None:
        # No -f: compose chooses the files itself in the stack folder, as a user typing
        # `docker compose` there gets (override file, COMPOSE_FILE, COMPOSE_PROFILES).
        argv = (*compose_program(run.env), *args)
        if ctx.dry_run:
            names = [str(f.relative_to(stack.path)) if f.is_relative_to(stack.path) else str(f)
                     for f in stack.compose_files(run.env)]
            run.note("compose files: " + ", ".join(names))
        cmd = Command(argv, stack.path, run.env,
                      foreground=ctx.interactive and subcommand in INTERACTIVE)
        run.run_command(f"compose {subcommand}", cmd)

    # pre/post hooks get the full compose arguments: $1 = the subcommand.
    return run_with_hooks(ctx, stack, env, subcommand, main, lambda run, phase: list(args))
