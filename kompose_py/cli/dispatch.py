"""From a parsed :class:`Invocation` to a run: validate everything, then start stacks.

Order matters for "nothing half-done": every usage and configuration error (bad -e, unknown
kompose command or option, no matching stack, unparsable .env of any selected stack) is found
before the first stack starts. kompose's own commands come from the command table
(commands.py); anything else is a subcommand of each stack's backend (backends/).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kompose_py import commands as table
from kompose_py import stacks as stacks_mod
from kompose_py.backends.choose import orchestrator_name
from kompose_py.cli.app import VERSION, Invocation
from kompose_py.cli.output import HumanReporter, use_color
from kompose_py.envfiles import EnvBuilder, StackEnv, parse_override
from kompose_py.errors import UsageError
from kompose_py.fanout import run_all
from kompose_py.hooks import check_hooks_file
from kompose_py.lifecycle import DEFAULT_HOOK_TIMEOUT, RunContext
from kompose_py.masking import mask, mask_argument, secret_values
from kompose_py.results import StackResult
from kompose_py.runner.run import DryRunner, Runner
from kompose_py.runner.supervisor import Supervisor, signal_name
from kompose_py.stacks import Stack


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
    if command in ("--help", "-h"):
        from kompose_py.commands import BY_NAME

        if pattern in BY_NAME:
            # `kompose db:cleanup --help`: a command's help needs no pattern.
            return CommandLine("*", pattern, ("--help",), dry_run)
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
                           inv.json, Runner(Supervisor()))
    if inv.status:
        from kompose_py.cli.statusview import show_status

        if len(inv.args) > 1:
            raise UsageError(f"--status takes only a PATTERN, got {inv.args[1]!r} after it")

        return show_status(root, inv.args[0] if inv.args else "*", builder, sys.stdout,
                           use_color(sys.stdout, inv.no_color), inv.json, Runner(Supervisor()))

    line = split_command_line(inv.args, inv.dry_run)
    spec = table.spec_for(line.command) if ":" in line.command else None
    try:
        options = spec.parse(list(line.args)) if spec is not None else None
    except table.HelpShown:
        return 0
    selected = stacks_mod.select(stacks_mod.discover(root), line.pattern, root)
    for hooks_file in (root / "hooks.sh", *(s.hooks_file for s in selected)):
        check_hooks_file(hooks_file)
    supervisor = Supervisor()
    if spec is not None and spec.kind == "report":
        # Read-only: no hooks, no summary. env:check reports unreadable .env files itself,
        # stack by stack.
        return int(table.load(spec.implementation)(table.ReportRequest(
            spec.name, root, selected, builder, sys.stdout,
            use_color(sys.stdout, inv.no_color), inv.json, Runner(supervisor))))
    if spec is not None and spec.one_stack and len(selected) != 1:
        names = ", ".join(s.name for s in selected)
        raise UsageError(f"{spec.name} {spec.one_stack}, and the pattern selects "
                         f"{len(selected)} ({names})", hint="name one stack")
    # Every selected stack's environment is read before the first one starts.
    envs = {s.name: builder.for_stack(s.env_file) for s in selected}
    if spec is not None and spec.prepare is not None:
        table.load(spec.prepare)(options, root, selected, envs)
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
    # Read-only questions run in a dry-run too (the plan names what a real run would use);
    # their answers are then kept for the run.
    ctx = RunContext(root, runner, reporter, timeout,
                     interactive=parallel == 1 and sys.stdin.isatty() and not inv.json,
                     query_runner=Runner(supervisor) if line.dry_run else None,
                     cache_queries=line.dry_run)
    shown_overrides = [mask_argument(f"{k}={v}") for k, v in overrides]
    if inv.network is not None:
        shown_overrides.insert(0, f"NETWORK_NAME={inv.network}")
    job = _job(spec, options, line)
    blocked: dict[str, str] = {}  # stack -> why it cannot run (its engine is unreachable)
    if spec is None:
        from kompose_py.cli.prechecks import before_backend

        blocked = before_backend(line.command, line.args, line.pattern, selected, envs,
                                 parallel, line.dry_run, Runner(supervisor), report_stream)
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
            from kompose_py.cli.envview import shadow_text

            reporter.note(stack.name, "shadowed: " + ", ".join(
                shadow_text(k, layer) for k, layer in sorted(env.shadowed.items())))
        stack_ctx = ctx if parallel == 1 else replace(
            ctx, runner=runner.labelled(stack.name.ljust(reporter.label_width)))
        result = job(stack_ctx, stack, env)
        if result.message:  # (a refusal before the pipeline may quote a value with a secret)
            result.message = mask(result.message, secrets)
        reporter.stack_end(stack.name, result)
        done.append(result)
        return result

    started = time.monotonic()
    # --json names each stack's orchestrator, as --list and --status do.
    orchestrators = {s.name: orchestrator_name(envs[s.name].values) for s in selected}
    if inv.json:
        from kompose_py.cli.report import abort_writer

        supervisor.on_abort = abort_writer(done, line.command, line.dry_run, orchestrators,
                                           supervisor)
    reporter.on_closed = supervisor.output_closed
    supervisor.install()
    results = run_all(selected, run_one, supervisor, inv.fail_fast, parallel,
                      not_run=lambda r: reporter.stack_end(r.stack, r),
                      mask=lambda stack, text: mask(text, secret_values(envs[stack.name].values)))
    reporter.summary(results, time.monotonic() - started)
    if inv.json:
        from kompose_py.cli.report import write_json

        signame = signal_name(supervisor)
        write_json(sys.stdout, results, line.command, line.dry_run, orchestrators,
                   **({"signal": signame} if signame else {}))
    failed = any(r.status in ("failed", "timeout") for r in results)
    if supervisor.cancelled.is_set():
        # The reader went away (`| head -1`): 141 as for any producer in a pipeline, unless
        # a stack failed; that still says 1.
        return 1 if failed and supervisor.signum == signal.SIGPIPE else supervisor.exit_code
    return 1 if failed or blocked or any(r.status == "cancelled" for r in results) else 0


# What a command does for one stack, given its run context and environment (fanout.Job is
# the same closed over both).
StackCommand = Callable[[RunContext, Stack, StackEnv], StackResult]


def _job(spec: table.CommandSpec | None, options: Any, line: CommandLine) -> StackCommand:
    """The function that runs COMMAND for one stack."""
    if spec is None:
        from kompose_py.stackcmd import run_stack_command

        args = (line.command, *line.args)
        return lambda ctx, stack, env: run_stack_command(ctx, stack, env, args)
    implementation = table.load(spec.implementation)
    return lambda ctx, stack, env: implementation(ctx, stack, env, options)
