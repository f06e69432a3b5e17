"""The Typer adapter: options in, one :class:`Invocation` out. No work happens here.

Grammar: ``kompose [GLOBAL OPTIONS] PATTERN COMMAND [ARGS...]``. Option parsing
stops at the first positional (``allow_interspersed_args=False``), so ``-n``/``-e``/``-f``
after COMMAND reach compose untouched; an unknown option before PATTERN is a usage error.
"""

# No `from __future__ import annotations` here: Typer reads the annotations of `kompose` on
# every call, and as strings it would compile and evaluate each of them twice (start-up).
import os
import sys
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from kompose_py import __version__
from kompose_py.commands import TABLE


@dataclass(frozen=True, eq=False, repr=False)
class Invocation:
    """The parsed command line."""

    args: tuple[str, ...]  # PATTERN COMMAND ARGS..., untouched
    dry_run: bool
    network: str | None
    env: tuple[str, ...]
    root: str | None
    list_stacks: bool
    no_color: bool
    version: bool
    parallel: int
    json: bool
    fail_fast: bool
    hook_timeout: float | None
    quiet: bool
    verbose: bool
    status: bool = False


VERSION = f"kompose-py {__version__}"

def complete_args(ctx: Any, args: list[str], incomplete: str) -> list[str | tuple[str, str]]:
    """Typer's completion callback; the completion module loads only when completing."""
    from kompose_py.cli.completion import complete_args as complete

    return complete(ctx, args, incomplete)


app = typer.Typer(
    # --install-completion / --show-completion, Typer's conventions (bash, zsh, fish).
    add_completion=True,
    # Merged environments hold passwords: never print locals in a traceback.
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
)

HELP = """Run a Docker Compose command, or a kompose command, on every stack matching PATTERN.

PATTERN is a comma-separated list of globs over stack names: "*", "blog,news", "*,!news".
COMMAND is any docker compose subcommand (up, down, ps, logs, exec, ...) or one of
""" + ", ".join(spec.name for spec in TABLE) + """
(kompose PATTERN COMMAND --help shows one's options). Everything after COMMAND
goes to it untouched, except a literal --dry-run (before any --).

Exit codes: 0 success, 1 a stack failed, 2 usage error, 3 no stack matched, 130 interrupted
(Ctrl-C), 143 SIGTERM, 129 SIGHUP, 141 the output's reader went away.
"""


def _show_version(value: bool) -> None:
    # Answered while parsing, so --version never imports the command layer.
    if value:
        sys.stdout.write(VERSION + "\n")
        raise typer.Exit(0)


@app.command(
    help=HELP,
    context_settings={"allow_interspersed_args": False, "help_option_names": ["-h", "--help"]},
    no_args_is_help=False,
)
def kompose(
    args: Annotated[list[str] | None, typer.Argument(metavar="PATTERN COMMAND [ARGS]...",
                                                      show_default=False,
                                                      autocompletion=complete_args)] = None,
    dry_run: Annotated[bool, typer.Option("-n", "--dry-run",
                                          help="Show what would run; run nothing.")] = False,
    network: Annotated[str | None, typer.Option(
        "--network", metavar="NAME", help="Set NETWORK_NAME for every stack.")] = None,
    env: Annotated[list[str] | None, typer.Option(
        "-e", "--env", metavar="KEY=VALUE",
        help="Override a variable for every stack (repeatable, later wins).")] = None,
    root: Annotated[str | None, typer.Option(
        "--root", metavar="DIR", help="The kompose root (default: $KOMPOSE_ROOT, ./stacks, .).")
    ] = None,
    list_stacks: Annotated[bool, typer.Option("-l", "--list", help="List the stacks.")] = False,
    status: Annotated[bool, typer.Option(
        "-s", "--status",
        help="What runs: services running/expected, health, ports, last dump per stack "
             "(an optional PATTERN narrows it).")] = False,
    parallel: Annotated[int, typer.Option("-j", "--parallel", metavar="N", min=1,
                                          help="Run up to N stacks at once.")] = 1,
    json: Annotated[bool, typer.Option("--json", help="Print one JSON report on stdout.")
                    ] = False,
    fail_fast: Annotated[bool, typer.Option(
        "--fail-fast", help="Start no new stack after the first failure.")] = False,
    hook_timeout: Annotated[float | None, typer.Option(
        "--hook-timeout", metavar="SECONDS",
        help="Time limit of one hook call (default: $KOMPOSE_HOOK_TIMEOUT or 300).")] = None,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Only errors and the summary.")
                     ] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Also show env files.")
                       ] = False,
    no_color: Annotated[bool, typer.Option("--no-color", help="Plain output.")] = False,
    version: Annotated[bool, typer.Option(
        "--version", help="Show the version.", is_eager=True,
        callback=_show_version)] = False,
) -> Invocation:
    return Invocation(tuple(args or ()), dry_run, network, tuple(env or ()), root, list_stacks,
                      no_color, version, parallel, json, fail_fast, hook_timeout, quiet, verbose,
                      status=status)


class ParseUsageError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


COMPLETION_OPTIONS = ("--show-completion", "--install-completion")
SHELLS = ("bash", "zsh", "fish", "powershell", "pwsh")


def _named_shell(argv: list[str]) -> None:
    """``--show-completion zsh`` / ``--install-completion fish``: the shell the user names.

    With shell detection on (Typer's default) both options are plain flags: a shell named
    after them was ignored, and ``--install-completion fish`` run from bash installed the bash
    script into ~/.bashrc. Typer's own form without detection takes the shell as a value
    (``--show-completion [bash|zsh|fish|powershell|pwsh]``); it is chosen, through Typer's
    switch for it, when a shell is named. Without one, the current shell is detected.
    """
    from kompose_py.cli.argv import own_options

    options = own_options(argv)
    for option in COMPLETION_OPTIONS:
        if option not in options:
            continue
        at = argv.index(option)
        shell = argv[at + 1] if at + 1 < len(argv) else ""
        if not shell or shell.startswith("-"):
            return  # no shell named: Typer detects the current one
        if shell not in SHELLS:
            raise ParseUsageError(f"{option}: unsupported shell {shell!r} "
                                  f"(one of: {', '.join(SHELLS)})")
        os.environ["_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION"] = "1"
        return


def parse(argv: list[str]) -> Invocation | int:
    """The invocation, or an exit code when Typer already answered (--help)."""
    if any(option in argv for option in COMPLETION_OPTIONS):
        _named_shell(argv)
    try:
        result: Any = app(args=argv, prog_name="kompose", standalone_mode=False)
    except Exception as exc:
        # Typer's vendored Click raises its UsageError family here; duck-typed so that no
        # private module is imported.
        if getattr(exc, "exit_code", None) == 2 and hasattr(exc, "format_message"):
            raise ParseUsageError(exc.format_message()) from None
        raise
    if isinstance(result, Invocation):
        return result
    return int(result or 0)

