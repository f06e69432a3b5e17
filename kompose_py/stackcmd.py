"""A backend command for one stack (``up -d``, ``ps``, ``logs -f``), between its hooks."""

from __future__ import annotations

from collections.abc import Sequence

from kompose_py.backends.choose import backend_for
from kompose_py.envfiles import StackEnv
from kompose_py.lifecycle import Produced, RunContext, StackRun, run_with_hooks
from kompose_py.results import StackResult, StepResult
from kompose_py.runner.command import Command, Outcome
from kompose_py.runner.run import Runner
from kompose_py.stacks import Stack


class RunSteps:
    """A stack run as a backend sees it (backends/base.py's Steps): the backend runs its
    processes through the run, so each is shown, recorded and masked like any step."""

    def __init__(self, run: StackRun) -> None:
        self.run = run
        self.env = run.env

    @property
    def dry_run(self) -> bool:
        return self.run.ctx.dry_run

    @property
    def queries(self) -> Runner:
        return self.run.ctx.queries

    def run_command(self, name: str, cmd: Command) -> Outcome:
        return self.run.run_command(name, cmd)

    def note(self, text: str) -> None:
        self.run.note(text)

    def detail(self, text: str) -> None:
        if self.dry_run or getattr(self.run.ctx.reporter, "verbose", False):
            self.run.note(text)

    def warn(self, text: str) -> None:
        self.run.warn(text)

    def fail(self, message: str) -> None:
        self.run.fail(message)

    def step(self, name: str, duration: float, error: str | None = None) -> None:
        self.run.record(StepResult(name, "command", "failed" if error else "success",
                                   1 if error else 0, duration,
                                   error=self.run.mask(error) if error else None), "command")

    def cancelled(self) -> bool:
        return self.run.ctx.runner.supervisor.cancelled.is_set()


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
        backend.perform(RunSteps(run), stack, args, ctx.interactive)
        return None

    # pre/post hooks get the full command's arguments: $1 = the subcommand.
    return run_with_hooks(ctx, stack, env, subcommand, main, lambda run, phase: list(args))
