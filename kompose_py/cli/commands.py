"""From a parsed :class:`Invocation` to a run: validate everything, then start stacks.

Order matters for "nothing half-done": every usage and configuration error (bad -e, unknown
kompose command, no matching stack, unparsable .env of any selected stack) is found before
the first stack starts.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from kompose_py import commandset
from kompose_py import stacks as stacks_mod
from kompose_py.cli.app import VERSION, Invocation
from kompose_py.cli.output import HumanReporter, use_color
from kompose_py.compose import run_compose
from kompose_py.envfiles import (
    EnvBuilder,
    StackEnv,
    mask,
    mask_argument,
    parse_override,
    secret_values,
)
from kompose_py.errors import UsageError
from kompose_py.hooks import check_hooks_file
from kompose_py.orchestrator import run_all
from kompose_py.pipeline import DEFAULT_HOOK_TIMEOUT, RunContext
from kompose_py.results import StackResult
from kompose_py.runner import DryRunner, Runner, Supervisor, signal_name
from kompose_py.stacks import Stack

KOMPOSE_COMMANDS = tuple(commandset.KOMPOSE_COMMANDS)


@dataclass(frozen=True, eq=False, repr=False)
class CommandLine:
    """PATTERN COMMAND ARGS... as kompose reads it."""

    pattern: str
    command: str
    args: tuple[str, ...]  # after COMMAND, with kompose's --dry-run and the first -- removed
    dry_run: bool


def split_command_line(args: Sequence[str], dry_run: bool) -> CommandLine:
    if not args:
        raise UsageError("missing PATTERN and COMMAND")
    if len(args) < 2:
        from kompose_py.cli.prechecks import misplaced_command

        meant = misplaced_command(args)  # `kompose up`: the command where the pattern goes
        raise UsageError(f"missing COMMAND after pattern {args[0]!r}",
                         hint=f"for every stack: {meant}" if meant
                         else f'for example: kompose "{args[0]}" ps')
    pattern, command, rest = args[0], args[1], list(args[2:])
    if command.startswith("-"):
        from kompose_py.cli.prechecks import misplaced_command

        meant = misplaced_command(args)
        raise UsageError(f"expected a COMMAND after the pattern, got option {command!r}",
                         hint=f"for every stack: {meant}" if meant
                         else "kompose's own options go before PATTERN")
    passed: list[str] = []
    for i, arg in enumerate(rest):
        if arg == "--":
            # Everything after `--` goes to compose verbatim, even a --dry-run.
            passed.extend(rest[i + 1:])
            break
        if arg == "--dry-run":
            dry_run = True  # kept for kompose.sh users' habit: `kompose blog up -d --dry-run`
            continue
        passed.append(arg)
    return CommandLine(pattern, command, tuple(passed), dry_run)


def hook_timeout(option: float | None, environ: dict[str, str]) -> float:
    if option is not None:
        value, source = option, "--hook-timeout"
    elif environ.get("KOMPOSE_HOOK_TIMEOUT"):
        source = "KOMPOSE_HOOK_TIMEOUT"
        try:
            value = float(environ["KOMPOSE_HOOK_TIMEOUT"])
        except ValueError:
            raise UsageError(f"KOMPOSE_HOOK_TIMEOUT={environ['KOMPOSE_HOOK_TIMEOUT']!r} "
                             "is not a number of seconds") from None
    else:
        return DEFAULT_HOOK_TIMEOUT
    if not value > 0:
        raise UsageError(f"{source} must be a positive number of seconds, not {value:g}")
    return value


def execute(inv: Invocation) -> int:
    if inv.version:
        sys.stdout.write(VERSION + "\n")
        return 0
    environ = dict(os.environ)
    overrides = tuple(parse_override(item) for item in inv.env)
    if inv.network is not None and not inv.network.strip():
        raise UsageError("--network needs a non-empty NAME")
    timeout = hook_timeout(inv.hook_timeout, environ)
    root = stacks_mod.resolve_root(inv.root, environ, Path.cwd())
    builder = EnvBuilder(environ, root / ".env", inv.network, overrides)

    if inv.list_stacks:
        from kompose_py.cli.listing import list_stacks

        pattern = inv.args[0] if inv.args else "*"
        return list_stacks(root, pattern, builder, sys.stdout, use_color(sys.stdout, inv.no_color),
                           inv.json)
    if inv.status:
        from kompose_py.cli.statusview import show_status

        if len(inv.args) > 1:
            raise UsageError(f"--status takes only a PATTERN, got {inv.args[1]!r} after it")

        return show_status(root, inv.args[0] if inv.args else "*", builder, sys.stdout,
                           use_color(sys.stdout, inv.no_color), inv.json)

    line = split_command_line(inv.args, inv.dry_run)
    # read-only: no hooks, no summary
    reports = ("db:list", "hooks:list", "hooks:check", "env:show", "env:check")
    if line.command in reports and line.args:
        raise UsageError(f"{line.command} takes no arguments, got {line.args[0]!r}")
    job_factory = None if line.command in reports else _job_factory(line)
    selected = stacks_mod.select(stacks_mod.discover(root), line.pattern, root)
    for hooks_file in (root / "hooks.sh", *(s.hooks_file for s in selected)):
        check_hooks_file(hooks_file)
    if line.command == "env:check":  # reports unreadable .env files itself, stack by stack
        from kompose_py.cli import envcommands

        return envcommands.check(root, selected, builder, sys.stdout,
                                 use_color(sys.stdout, inv.no_color), inv.json)
    # Every selected stack's environment is read before the first one starts.
    envs = {s.name: builder.for_stack(s.env_file) for s in selected}
    if job_factory is None:
        from kompose_py.cli import listing

        color = use_color(sys.stdout, inv.no_color)
        if line.command == "env:show":
            from kompose_py.cli import envcommands

            return envcommands.show(root, selected, envs, sys.stdout, color, inv.json)
        if line.command == "db:list":
            return listing.list_db_dumps(selected, envs, sys.stdout, color, inv.json)
        if line.command == "hooks:list":
            return listing.list_hooks(root, selected, sys.stdout, color, inv.json)
        return listing.check_hooks(root, selected, sys.stdout, color, inv.json)

    supervisor = Supervisor()
    report_stream = sys.stderr
    parallel = min(inv.parallel, len(selected))
    reporter = HumanReporter(report_stream, use_color(report_stream, inv.no_color), root,
                             prefix_lines=parallel > 1, quiet=inv.quiet, verbose=inv.verbose,
                             dry_run=line.dry_run,
                             label_width=max(len(s.name) for s in selected))
    runner_type = DryRunner if line.dry_run else Runner
    # With --json, stdout carries the report alone; children write to stderr.
    runner = runner_type(supervisor, to_stderr=inv.json, lock=reporter.lock,
                         tail_stderr=not report_stream.isatty())
    ctx = RunContext(root, runner, reporter, timeout,
                     interactive=parallel == 1 and sys.stdin.isatty() and not inv.json)
    shown_overrides = [mask_argument(f"{k}={v}") for k, v in overrides]
    if inv.network is not None:
        shown_overrides.insert(0, f"NETWORK_NAME={inv.network}")
    job = job_factory(ctx, envs, selected)  # checks the arguments before anything runs
    blocked: dict[str, str] = {}  # stack -> why it cannot run (its engine is unreachable)
    if ":" not in line.command:
        from kompose_py.cli.prechecks import before_compose

        blocked = before_compose(line.command, line.args, line.pattern, selected, envs,
                                 parallel, line.dry_run, KOMPOSE_COMMANDS, report_stream)
    done: list[StackResult] = []

    def run_one(stack: Stack) -> StackResult:
        env = envs[stack.name]
        if stack.name in blocked:
            result = StackResult(stack.name, "not run", message=blocked[stack.name])
            reporter.stack_end(stack.name, result)
            done.append(result)
            return result
        # Masked with this stack's secrets too: -e DSN=postgres://u:<root password>@h.
        secrets = secret_values(env.values)
        reporter.stack_start(stack.name, env.files, [mask(o, secrets) for o in shown_overrides],
                             line.dry_run)
        if env.shadowed and (line.dry_run or inv.verbose):
            # Key names only, never values: which stack .env settings do not apply.
            from kompose_py.cli.envcommands import shadow_text

            reporter.note(stack.name, "shadowed: " + ", ".join(
                shadow_text(k, layer) for k, layer in sorted(env.shadowed.items())))
        stack_ctx = ctx if parallel == 1 else replace(
            ctx, runner=runner.labelled(stack.name.ljust(reporter.label_width)))
        result = job(stack_ctx, stack)
        reporter.stack_end(stack.name, result)
        done.append(result)
        return result

    started = time.monotonic()
    if inv.json:
        from kompose_py.cli.report import abort_writer

        supervisor.on_abort = abort_writer(done, line.command, line.dry_run, supervisor)
    reporter.on_closed = supervisor.output_closed
    supervisor.install()
    results = run_all(selected, run_one, supervisor, inv.fail_fast, parallel,
                      not_run=lambda r: reporter.stack_end(r.stack, r),
                      mask=lambda stack, text: mask(text, secret_values(envs[stack.name].values)))
    reporter.summary(results, time.monotonic() - started)
    if inv.json:
        from kompose_py.cli.report import write_json

        signame = signal_name(supervisor)
        write_json(sys.stdout, results, line.command, line.dry_run,
                   **({"signal": signame} if signame else {}))
    failed = any(r.status in ("failed", "timeout") for r in results)
    if supervisor.cancelled.is_set():
        # The reader went away (`| head -1`): 141 as for any producer in a pipeline, unless
        # a stack failed; that still says 1.
        return 1 if failed and supervisor.signum == signal.SIGPIPE else supervisor.exit_code
    return 1 if failed or blocked or any(r.status == "cancelled" for r in results) else 0


Job = Callable[[RunContext, Stack], StackResult]
JobFactory = Callable[[RunContext, dict[str, StackEnv], Sequence[Stack]], Job]


def _job_factory(line: CommandLine) -> JobFactory:
    """The function that runs COMMAND for one stack. Unknown kompose commands and bad
    arguments of kompose commands fail here, before any stack starts."""
    if ":" not in line.command:
        args = (line.command, *line.args)
        return lambda ctx, envs, selected: (
            lambda stack_ctx, stack: run_compose(stack_ctx, stack, envs[stack.name], args))
    if line.command not in KOMPOSE_COMMANDS:
        import difflib  # only for this message: ~1.5 ms of every start otherwise

        close = difflib.get_close_matches(line.command, KOMPOSE_COMMANDS, n=1)
        raise UsageError(f"unknown kompose command {line.command!r}",
                         hint=f"did you mean {close[0]}?" if close
                         else "kompose commands: " + ", ".join(KOMPOSE_COMMANDS))
    from kompose_py.cli import dbcommands

    return dbcommands.factory(line.command, line.args)
