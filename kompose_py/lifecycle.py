"""pre → command → post → error (on failure) → finally, for one stack.

Semantics, table-tested in tests/test_hooks.py (test_failure_semantics) and
tests/test_hook_runtime.py:
- a failing pre hook: the command does not run, the stack fails (failed step "pre");
- a failing command: post hooks do not run, the stack fails ("command");
- a failing post hook: the stack fails ("post");
- after any failure the error hooks run; the finally hooks always run last, and a failing
  error or finally hook fails an otherwise successful stack but never hides the first failure;
- the first failure decides the status and exit code.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from kompose_py import hooks
from kompose_py.envfiles import StackEnv, read_env_file
from kompose_py.errors import KomposeError
from kompose_py.files import process_gone
from kompose_py.masking import display, mask, mask_argument, secret_values
from kompose_py.results import Reporter, StackResult, StepResult
from kompose_py.runner.command import Command, Outcome, failure_line
from kompose_py.runner.run import Runner
from kompose_py.stacks import Stack

DEFAULT_HOOK_TIMEOUT = 300.0

# Variables that change how bash itself runs (startup files, options, word splitting,
# tracing, exported functions): a .env may set them for compose, never for the hooks.
_BASH_CONTROL = frozenset({"BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "PS4", "IFS", "CDPATH",
                           "GLOBIGNORE", "BASH_XTRACEFD", "PROMPT_COMMAND", "POSIXLY_CORRECT",
                           "BASH_COMPAT", "EXECIGNORE", "TIMEFORMAT", "HISTFILE"})


def _changes_bash(key: str) -> bool:
    return key in _BASH_CONTROL or key.startswith("BASH_FUNC_")


@dataclass(eq=False, repr=False)  # not frozen: defined on every start (start-up time)
class Produced:
    """What a stack's main step made: files (a new dump: the post hooks get its path and
    KOMPOSE_DUMP_FILE), and whether it completed what must not be left half-done (a
    database swap: a signal after it skips the post hooks but does not cancel the stack)."""

    files: tuple[str, ...] = ()
    committed: bool = False


@dataclass(frozen=True, eq=False, repr=False)
class RunContext:
    """What every stack of one run shares."""

    root: Path
    runner: Runner
    reporter: Reporter
    hook_timeout: float = DEFAULT_HOOK_TIMEOUT
    # Commands may keep the terminal: one stack at a time and stdin is a TTY.
    interactive: bool = False
    # Read-only questions (which container is the database?) are asked in dry-runs too, so
    # that the plan names what a real run would use: a real runner under the run's
    # supervisor; ``cache_queries``: their answers are kept for the run (dry-runs).
    query_runner: Runner | None = None
    cache_queries: bool = False

    @property
    def queries(self) -> Runner:
        return self.query_runner or self.runner

    @property
    def dry_run(self) -> bool:
        return self.runner.dry_run

    @property
    def root_hooks(self) -> Path:
        return self.root / "hooks.sh"



class StackRun:
    """The state of one stack's operation: its environment, steps and first failure."""

    def __init__(self, ctx: RunContext, stack: Stack, env: StackEnv, command: str,
                 hook_extra: Callable[[Mapping[str, str]], Mapping[str, str]] | None = None
                 ) -> None:
        self.ctx = ctx
        self.stack = stack
        self.command = command
        self.env = dict(env.values)
        self.result = StackResult(stack.name, "success")
        self.started = time.monotonic()
        self.env_file: Path | None = None
        # Variables for the hooks only, from the environment as it stands at each call (a
        # pre hook may have changed DB_HOST or DB_PASSWORD through $KOMPOSE_ENV_FILE).
        self.hook_extra = hook_extra
        # The main step finished what it must not leave half-done (a database swap): a
        # signal after that skips the post hooks but does not call the stack cancelled.
        self.main_done = False
        self._tentative: tuple[StepResult, str | None] | None = None

    # -- text ---------------------------------------------------------------------------
    def mask(self, text: str) -> str:
        return mask(text, secret_values(self.env))

    def display(self, argv: Sequence[str], env_prefix: Mapping[str, str] | None = None) -> str:
        """The shell-quoted command line, secret-masked (passwords never leave masked)."""
        return display(argv, secret_values(self.env), env_prefix)

    def note(self, text: str) -> None:
        self.ctx.reporter.note(self.stack.name, self.mask(text))

    def warn(self, text: str) -> None:
        """A line the user must see although nothing failed; it also goes into the report
        (--json ``warnings``)."""
        text = self.mask(text)
        self.ctx.reporter.note(self.stack.name, "warning: " + text)
        self.result.warnings.append(text)

    # -- steps --------------------------------------------------------------------------
    def record(self, step: StepResult, phase: str, reason: str | None = None,
               message: str | None = None, decide: bool = True) -> StepResult:
        """Add a step; the first failure decides the stack's status. ``reason``: the first
        error line the step printed, for the summary; ``message``: the summary's line in the
        step's own words (it replaces ``exit N: reason``); ``decide=False``: a tentative
        attempt, whose failure decides only through :meth:`settle`."""
        self.result.steps.append(step)
        self.ctx.reporter.step_end(self.stack.name, step)
        if step.status != "success" and message is None and not step.error and reason \
                and step.status == "failed":
            message = f"exit {step.exit_code}: {reason}"
        if not decide:
            self._tentative = (step, message)
        elif step.status != "success" and self.result.status == "success":
            self.result.status = step.status
            self.result.failed_step = phase
            self.result.exit_code = step.exit_code or 1
            said = step.error or message
            if said:
                self.result.message = self.mask(said)
        return step

    def settle(self) -> None:
        """The last tentative attempt (``run_command(..., tentative=True)``) was not tried
        another way: its failure decides the stack's status after all."""
        if self._tentative is not None:
            step, message = self._tentative
            self._tentative = None
            if step.status != "success" and self.result.status == "success":
                self.result.status = step.status
                self.result.failed_step = "command"
                self.result.exit_code = step.exit_code or 1
                said = step.error or message
                if said:
                    self.result.message = self.mask(said)

    def run_command(self, name: str, cmd: Command, env_prefix: Mapping[str, str] | None = None,
                    suffix: str = "", explain: Callable[[Outcome], str | None] | None = None,
                    tentative: bool = False) -> Outcome:
        """Run a main-step command, reporting its line (``suffix``: a shown redirection).
        ``explain``: the summary's line for a failure, from what the command printed (its
        tool's own wording); ``tentative``: see :meth:`record`."""
        self.ctx.reporter.command_start(self.stack.name,
                                        self.display(cmd.argv, env_prefix) + suffix,
                                        self.ctx.dry_run)
        if cmd.mask is None:
            secrets = secret_values(self.env)  # once per command, not per line
            if secrets:
                cmd = replace(cmd, mask=lambda text: mask(text, secrets))
        outcome = self.ctx.runner.run(cmd)
        error = outcome.error or outcome.warning
        if outcome.warning:
            self.note(outcome.warning)
        message = explain(outcome) if explain is not None and not outcome.ok \
            and not outcome.error else None
        self.record(StepResult(name, "command", outcome.status, outcome.exit_code,
                               outcome.duration, error=error and self.mask(error)),
                    "command", self._reason(outcome.stderr_tail), message, decide=not tentative)
        return outcome

    def _reason(self, tail: Sequence[str]) -> str | None:
        return self.mask(failure_line(tail)) if tail else None

    def fail(self, message: str, phase: str = "command") -> None:
        """A failure that is not a process exit (unreachable server, bad input)."""
        self.record(StepResult(phase if phase != "command" else self.command, "command",
                               "failed", 1, 0.0, error=self.mask(message)), phase)

    def stopped(self, message: str) -> None:
        """The command ended part-way because the run was cancelled (Ctrl-C, SIGTERM, SIGHUP),
        whatever status its process left (docker exec's client exits 0 when signalled)."""
        self.record(StepResult(self.command, "command", "cancelled",
                               self.ctx.runner.supervisor.exit_code, 0.0,
                               error=self.mask(message)), "command")

    def hook_env(self, function: str, phase: str) -> dict[str, str]:
        env = {k: v for k, v in self.env.items() if not _changes_bash(k)}
        if self.hook_extra is not None:
            env.update(self.hook_extra(self.env))
        env.update(
            SCRIPT_DIR=str(self.ctx.root),
            stack=self.stack.name,
            KOMPOSE_ROOT=str(self.ctx.root),
            KOMPOSE_STACK=self.stack.name,
            KOMPOSE_STACK_DIR=str(self.stack.path),
            KOMPOSE_COMMAND=self.command,
            KOMPOSE_HOOK=function,
            KOMPOSE_DRY_RUN="1" if self.ctx.dry_run else "0",
        )
        if self.env_file is not None:
            env["KOMPOSE_ENV_FILE"] = str(self.env_file)
        if phase != "pre":
            r = self.result
            env.update(
                KOMPOSE_STATUS=r.status,
                KOMPOSE_EXIT_CODE=str(r.exit_code),
                KOMPOSE_FAILED_STEP=r.failed_step,
                KOMPOSE_DURATION_MS=str(int((time.monotonic() - self.started) * 1000)),
            )
        if self.result.files:
            # The dump a db command works on: known before the pre hook for an import, from
            # the post hook on for an export.
            env["KOMPOSE_DUMP_FILE"] = self.result.files[-1]
        return env

    def run_hooks(self, phase: str, args: Sequence[str], condition: str = "") -> bool:
        """Every hook of one hook point; stops at the first failure for pre and post."""
        ok = True
        for hook in hooks.hooks_for(phase, self.command, self.ctx.root_hooks,
                                    self.stack.hooks_file):
            if phase in ("pre", "post") and self.interrupted():
                return False
            short = hook.function.removeprefix("hook_")
            self.ctx.reporter.hook_start(self.stack.name, short, hook.scope,
                                         [self.mask(mask_argument(a)) for a in args],
                                         self.ctx.dry_run,
                                         condition)
            cmd = hooks.hook_command(hook, args, self.stack.path,
                                     self.hook_env(hook.function, phase), self.ctx.hook_timeout)
            outcome = self.ctx.runner.run(cmd)
            self.record(StepResult(short, "hook", outcome.status, outcome.exit_code,
                                   outcome.duration, hook.scope, outcome.error), phase,
                        self._reason(outcome.stderr_tail))
            if phase == "pre" and outcome.ok and not self.ctx.dry_run:
                try:
                    self._absorb_env_file()
                except KomposeError as exc:
                    self.fail(f"$KOMPOSE_ENV_FILE written by {hook.function}: {exc.message}",
                              phase="pre")
                    return False
            if not outcome.ok:
                ok = False
                if phase in ("pre", "post"):
                    break
        return ok

    def interrupted(self) -> bool:
        """After Ctrl-C, SIGTERM or SIGHUP no further pre, command or post step starts: the
        stack is cancelled (unless it already failed) and only its error and finally hooks
        still run."""
        supervisor = self.ctx.runner.supervisor
        if not supervisor.cancelled.is_set():
            return False
        if self.main_done:
            if self.result.status == "success" and not self.result.message:
                self.result.message = "interrupted after the command completed: post hooks " \
                                      "not run"
            return True
        if self.result.status == "success":
            self.result.status = "cancelled"
            self.result.exit_code = supervisor.exit_code
        return True

    def _absorb_env_file(self) -> None:
        """KEY=VALUE lines a pre hook wrote to $KOMPOSE_ENV_FILE join this stack's env."""
        if self.env_file is None or self.env_file.stat().st_size == 0:
            return
        self.env.update(read_env_file(self.env_file, self.env))


def internal_error(exc: BaseException) -> str:
    """``internal error: <message>`` for an exception nobody expected (not yet masked);
    with KOMPOSE_DEBUG=1 its traceback goes to stderr too."""
    if os.environ.get("KOMPOSE_DEBUG") == "1":
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__)
    return f"internal error: {exc or type(exc).__name__}"


@contextlib.contextmanager
def contained(run: StackRun, phase: str) -> Iterator[None]:
    """Any unexpected exception in one phase of one stack becomes that stack's failure
    (``internal error: …``, secrets masked); KOMPOSE_DEBUG=1 also prints the traceback."""
    try:
        yield
    except Exception as exc:
        message = internal_error(exc)
        if run.result.message != run.mask(message):  # the same cause again: said already
            run.fail(message, phase=phase)


ENV_FILE_PREFIX = "kompose-env-"
_swept: list[bool] = []


def private_env_file() -> Path:
    """A new empty file (0600) for one stack run's KOMPOSE_ENV_FILE: pre hooks may write
    decrypted secrets there. Its name carries kompose's pid, so that the files of a kompose
    that was killed (SIGKILL leaves no chance to remove them) are removed by the next one."""
    import tempfile  # only when a hook really runs: not on the dry-run start-up path

    if not _swept:
        _swept.append(True)
        sweep_env_files(Path(tempfile.gettempdir()))
    fd, name = tempfile.mkstemp(prefix=f"{ENV_FILE_PREFIX}{os.getpid()}-", suffix=".env")
    os.close(fd)
    return Path(name)


def sweep_env_files(folder: Path) -> list[Path]:
    """Remove the env files of this user's kompose processes that no longer run; a file
    whose pid is alive (a running kompose, or a pid reused since: left alone, to be safe)
    or that is not ours is kept. The files removed."""
    removed: list[Path] = []
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            name = entry.name
            if not (name.startswith(ENV_FILE_PREFIX) and name.endswith(".env")):
                continue
            pid_text = name[len(ENV_FILE_PREFIX):].split("-", 1)[0]
            if not pid_text.isdigit() or int(pid_text) == os.getpid():
                continue
            try:
                if entry.stat(follow_symlinks=False).st_uid != os.getuid() \
                        or not entry.is_file(follow_symlinks=False):
                    continue
            except OSError:
                continue  # unreadable: not ours to judge
            if not process_gone(int(pid_text)):
                continue
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def run_with_hooks(ctx: RunContext, stack: Stack, env: StackEnv, command: str,
                   main: Callable[[StackRun], Produced | None],
                   hook_args: Callable[[StackRun, str], Sequence[str]],
                   hook_env: Callable[[Mapping[str, str]], Mapping[str, str]] | None = None,
                   files: Sequence[str] = ()) -> StackResult:
    """One stack's pipeline; ``main`` runs the command steps through ``run.run_command`` and
    returns what it produced. ``hook_env``: extra variables for the hooks only, from the
    stack's environment as it stands at each call (libpq's PG* for db commands);
    ``files``: what the command works on from the start (the dump an import loads), so
    that every hook sees it as KOMPOSE_DUMP_FILE and the report lists it."""
    run = StackRun(ctx, stack, env, command, hook_env)
    run.result.files.extend(files)
    if not ctx.dry_run:
        run.env_file = private_env_file()
    # A second signal ends kompose at once, past the finally below: it removes the file too.
    with contextlib.ExitStack() as keep:
        if run.env_file is not None:
            keep.enter_context(ctx.runner.supervisor.temporary(run.env_file))
        _phases(run, ctx, main, hook_args)
    run.result.duration = time.monotonic() - run.started
    return run.result


def _phases(run: StackRun, ctx: RunContext, main: Callable[[StackRun], Produced | None],
            hook_args: Callable[[StackRun, str], Sequence[str]]) -> None:
    """pre -> main -> post -> error -> finally of one stack run, and the env file's removal."""
    try:
        with contained(run, "pre"):
            if run.run_hooks("pre", hook_args(run, "pre")) and not run.interrupted():
                with contained(run, "command"):
                    try:
                        produced = main(run)
                        if produced is not None:
                            run.result.files.extend(produced.files)
                            run.main_done = produced.committed
                    except KomposeError as exc:
                        run.fail(exc.message if not exc.hint else f"{exc.message} ({exc.hint})")
                if run.result.status == "success" and not run.interrupted():
                    run.run_hooks("post", hook_args(run, "post"))
        # A crash above is this stack's failure, not the run's: its error and finally hooks
        # still run (each contained too), and the next stack starts as usual.
        with contained(run, "error"):
            if run.result.status != "success":
                run.run_hooks("error", hook_args(run, "error"))
            elif ctx.dry_run:
                # Nothing fails in a dry-run; still show what would run if something did.
                run.run_hooks("error", hook_args(run, "error"), condition="on failure")
        with contained(run, "finally"):
            run.run_hooks("finally", hook_args(run, "finally"))
    finally:
        if run.env_file is not None:
            if run.env_file.is_dir() and not run.env_file.is_symlink():
                import shutil  # a hook put a folder there: still leave nothing behind

                shutil.rmtree(run.env_file, ignore_errors=True)
            with contextlib.suppress(OSError):
                run.env_file.unlink(missing_ok=True)
