"""Running one job over the selected stacks: order, fail-fast, Ctrl-C (SPEC.md §5, §9)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from kompose_py.results import StackResult
from kompose_py.runner import Supervisor
from kompose_py.stacks import Stack

Job = Callable[[Stack], StackResult]


def run_all(stacks: Sequence[Stack], job: Job, supervisor: Supervisor,
            fail_fast: bool = False,
            not_run: Callable[[StackResult], None] = lambda result: None) -> list[StackResult]:
    """Every stack is attempted (a failure does not stop the run) unless fail-fast or Ctrl-C."""
    results: list[StackResult] = []
    stop_reason: str | None = None
    for stack in stacks:
        if supervisor.cancelled.is_set():
            stop_reason = stop_reason or "interrupted"
        if stop_reason:
            results.append(StackResult(stack.name, "not run", message=stop_reason))
            not_run(results[-1])
            continue
        result = job(stack)
        results.append(result)
        if fail_fast and result.status in ("failed", "timeout", "cancelled"):
            stop_reason = f"--fail-fast after {stack.name} failed"
    return results
