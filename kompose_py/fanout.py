"""Running one job over the selected stacks: order, parallelism, fail-fast, Ctrl-C."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from kompose_py.lifecycle import internal_error
from kompose_py.results import StackResult
from kompose_py.runner.supervisor import Supervisor, signal_name
from kompose_py.stacks import Stack

Job = Callable[[Stack], StackResult]
FAILED = ("failed", "timeout", "cancelled")


def contain(job: Job, mask: Callable[[Stack, str], str]) -> Job:
    """A crash in one stack's job is that stack's failure (``internal error: …``, masked with
    ``mask``); the other stacks still run and the summary is still printed. The pipeline
    contains crashes around each phase already; this catches what happens outside it."""
    def guarded(stack: Stack) -> StackResult:
        try:
            return job(stack)
        except Exception as exc:
            return StackResult(stack.name, "failed", exit_code=1,
                               message=mask(stack, internal_error(exc)))
    return guarded


def run_all(stacks: Sequence[Stack], job: Job, supervisor: Supervisor,
            fail_fast: bool = False, parallel: int = 1,
            not_run: Callable[[StackResult], None] = lambda result: None,
            mask: Callable[[Stack, str], str] = lambda stack, text: text) -> list[StackResult]:
    """Every stack is attempted (a failure does not stop the run) unless --fail-fast or
    Ctrl-C; up to ``parallel`` at once, started in stack order. Results keep stack order."""
    results: dict[str, StackResult] = {}
    stop_reason: list[str] = []
    job = contain(job, mask)

    def finished(stack: Stack, result: StackResult) -> None:
        results[stack.name] = result
        if fail_fast and result.status in FAILED and not stop_reason:
            stop_reason.append(f"--fail-fast after {stack.name} failed")

    def should_stop() -> bool:
        if supervisor.cancelled.is_set() and not stop_reason:
            name = signal_name(supervisor)
            stop_reason.append("interrupted" if name in (None, "SIGINT") else
                               "output closed (its reader went away)" if name == "SIGPIPE"
                               else f"interrupted ({name})")
        return bool(stop_reason)

    pending = list(stacks)
    if parallel <= 1:
        while pending and not should_stop():
            stack = pending.pop(0)
            finished(stack, job(stack))
    else:
        import concurrent.futures as cf  # ~2.5 ms of every start (it loads logging): -j N only

        with cf.ThreadPoolExecutor(max_workers=parallel) as pool:
            running: dict[cf.Future[StackResult], Stack] = {}
            while pending or running:
                while pending and len(running) < parallel and not should_stop():
                    stack = pending.pop(0)
                    running[pool.submit(job, stack)] = stack
                if not running:
                    break
                # A short timeout keeps the main thread free for Ctrl-C.
                done, _ = cf.wait(running, timeout=0.2, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    finished(running.pop(future), future.result())
    for stack in pending:
        results[stack.name] = StackResult(stack.name, "not run", message=stop_reason[0])
        not_run(results[stack.name])
    return [results[s.name] for s in stacks]
