"""THE table of kompose's own commands (they contain a colon: ``db:export``, ``hooks:check``).

Each command is declared once, here: its name, its one-line help, its options (for a real
parser: ``kompose web db:export --help`` answers), whether its hooks run
(``hook_pre_db_export`` …), whether it takes one stack only, and where its implementation
lives. Dispatch, ``--help``, ``hooks:check``, shell completion and the JSON ``command`` field
read this table; adding a command touches this table and its own module, nothing else.

Kept light on purpose (completion and ``--help`` read it on every call): implementations are
named as ``module:function`` and imported only when the command runs, and argparse is
imported only when a command's options are parsed.

Two kinds of commands:

- ``stacks``: runs per selected stack between its hooks, with a summary (``db:export``);
  the implementation is ``function(ctx, stack, env, options) -> StackResult``;
- ``report``: reads and prints, no hooks, no summary (``db:list``); the implementation is
  ``function(request) -> exit code`` (see cli/dispatch.py's ``ReportRequest``).

Compose's own subcommands (``up``, ``ps``, …) are not here: the stack's backend knows them
(backends/).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from kompose_py.errors import UsageError

if TYPE_CHECKING:
    from argparse import ArgumentParser, Namespace
    from collections.abc import Sequence
    from pathlib import Path
    from typing import TextIO

    from kompose_py.envfiles import EnvBuilder, StackEnv
    from kompose_py.runner.run import Runner
    from kompose_py.stacks import Stack


# Not frozen, no eq or repr: every kompose start builds this table, and a frozen dataclass
# costs three times as much to define (start-up time; the rows are constants by convention).
@dataclass(eq=False, repr=False)
class CommandSpec:
    name: str
    help: str
    kind: Literal["stacks", "report"]
    implementation: str  # "module:function", imported when the command runs
    # Adds the command's options and arguments to its parser.
    arguments: Callable[[ArgumentParser], None] | None = None
    # Its hook points (hook_pre_<name>, …) run; the hooks' $1.. are its own.
    hooked: bool = False
    # The pattern must select exactly one stack; the words that say why ("opens one
    # database").
    one_stack: str = ""
    # Checked once before any stack starts, with the selection and their environments
    # ("module:function", ``function(options, root, selected, envs)``); raises UsageError.
    prepare: str | None = None
    # Shell completion offers the stack's dump files as its argument.
    completes_dump: bool = False
    # Everything after the command goes to a program untouched (psql for db:shell).
    passthrough: bool = False
    epilog: str = ""

    @property
    def hook_name(self) -> str:
        """The part of a hook function's name that stands for this command."""
        return self.name.replace("-", "_").replace(":", "_")

    def parse(self, args: list[str]) -> Namespace:
        """The command's options; ``--help`` prints its help and raises :class:`HelpShown`."""
        import argparse

        if self.passthrough:
            if args[:1] in (["--help"], ["-h"]):
                parser = self._parser(argparse)
                parser.print_help()
                raise HelpShown
            return argparse.Namespace(args=list(args[1:] if args[:1] == ["--"] else args))
        parser = self._parser(argparse)
        return parser.parse_args(args)

    def _parser(self, argparse: Any) -> ArgumentParser:
        parser: ArgumentParser = _Parser(prog=f"kompose PATTERN {self.name}",
                                         description=self.help, epilog=self.epilog or None,
                                         formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.command = self.name  # type: ignore[attr-defined]
        if self.passthrough:
            parser.add_argument("args", nargs="*", metavar="ARGS",
                                help="passed to the program untouched (-- ends kompose's "
                                     "reading: db:shell -- --help shows psql's help)")
        elif self.arguments is not None:
            self.arguments(parser)
        return parser


@dataclass(eq=False, repr=False)  # (start-up time, as CommandSpec)
class ReportRequest:
    """What a report command (``kind="report"`` in the table) reads and where it writes."""

    command: str
    root: Path
    selected: Sequence[Stack]
    builder: EnvBuilder
    out: TextIO
    color: bool
    as_json: bool
    runner: Runner  # for read-only questions (bash -n, docker ps), under the run's supervisor

    def envs(self) -> dict[str, StackEnv]:
        return {s.name: self.builder.for_stack(s.env_file) for s in self.selected}


class HelpShown(Exception):
    """A command's ``--help`` was printed: nothing runs, exit 0."""


def _parser_class() -> type:
    import argparse

    class Parser(argparse.ArgumentParser):
        """argparse that reports a usage error as kompose does (one line, exit 2), and
        whose --help ends the run without running anything."""

        def error(self, message: str) -> Any:
            raise UsageError(f"{getattr(self, 'command', self.prog)}: {message}",
                             hint=f"kompose PATTERN {getattr(self, 'command', '')} --help")

        def exit(self, status: int = 0, message: str | None = None) -> Any:
            if status:
                raise UsageError(message or f"{self.prog}: error")
            raise HelpShown

    return Parser


def _Parser(**kwargs: Any) -> ArgumentParser:
    return _parser_class()(**kwargs)  # type: ignore[no-any-return]


# -- the options of each command ------------------------------------------------------------
def _export_arguments(p: ArgumentParser) -> None:
    p.add_argument("--format", choices=("plain", "custom", "directory"), default=None,
                   help="plain SQL <db>_<time>Z.sql (default, or DB_DUMP_FORMAT), pg_dump's "
                        "custom archive <db>_<time>Z.dump, or its directory archive "
                        "<db>_<time>Z.dir/ (both restore in parallel)")
    p.add_argument("--compress", nargs="?", const="gzip", default=None, type=_compress,
                   metavar="METHOD[:LEVEL]",
                   help="gzip (the default METHOD), lz4 or zstd, optionally :LEVEL; done by "
                        "pg_dump where it can (16+ for lz4/zstd), else by kompose for plain "
                        "dumps (.sql.gz, .sql.lz4, .sql.zst)")
    p.add_argument("--jobs", type=_jobs, default=1, metavar="N",
                   help="pg_dump processes for a directory archive (default 1)")


def _import_arguments(p: ArgumentParser) -> None:
    p.add_argument("file", nargs="?", metavar="FILE",
                   help="the dump to load (one stack only); default: each stack's newest "
                        "complete dump")
    p.add_argument("--force", action="store_true",
                   help="load an incomplete dump, or one with psql meta-commands (they are "
                        "left out), still through a scratch database")
    p.add_argument("--skip-unrestorable", action="store_true",
                   help="import even when the connecting role cannot put back some of the "
                        "database's own settings or grants (another role's setting, a "
                        "superuser-only parameter, a grantor it may not act for); each one "
                        "left out is listed")
    p.add_argument("--jobs", type=_jobs, default=None, metavar="N",
                   help="pg_restore processes for a custom or directory archive (default: "
                        "the number of CPUs, at most 4)")


def _compress(text: str) -> str:
    """Checked when the options are read (one clear line before anything runs)."""
    from kompose_py.db.compression import parse_compress

    parse_compress(text)
    return text


def _verify_arguments(p: ArgumentParser) -> None:
    p.add_argument("file", nargs="?", metavar="FILE",
                   help="the dump to verify (one stack only); default: each stack's newest "
                        "complete dump")
    p.add_argument("--jobs", type=_jobs, default=None, metavar="N",
                   help="pg_restore processes for a custom or directory archive (default: "
                        "the number of CPUs, at most 4)")


def _jobs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"--jobs {text!r}: not a whole number") from None
    if not 1 <= value <= 64:
        raise UsageError(f"--jobs {value}: expected 1 to 64")
    return value


def _cleanup_arguments(p: ArgumentParser) -> None:
    import argparse

    class Once(argparse.Action):
        """A rule given twice (``--keep 2 --keep-last 3``) is a usage error, not the last
        one silently."""

        def __call__(self, parser: ArgumentParser, namespace: Namespace, values: Any,
                     option_string: str | None = None) -> None:
            if getattr(namespace, self.dest, None) is not None:
                raise UsageError(f"db:cleanup {option_string} {values}: "
                                 f"--{self.dest.replace('_', '-')} is already given"
                                 + (" (--keep N is --keep-last N)"
                                    if self.dest == "keep_last" else ""),
                                 hint="kompose db:cleanup --help lists the rules")
            setattr(namespace, self.dest, values)

    rules = p.add_argument_group(
        "retention (restic forget's rules; any --keep-* replaces the DB_KEEP_* variables)")
    rules.add_argument("--keep-last", "--keep", dest="keep_last", action=Once,
                       type=_count("--keep/--keep-last"),
                       metavar="N", help="keep the N newest complete dumps (--keep N is the "
                                         "same); with no rule at all: 1")
    for rule, what in (("hourly", "hour"), ("daily", "day"), ("weekly", "ISO week"),
                       ("monthly", "month"), ("yearly", "year")):
        rules.add_argument(f"--keep-{rule}", dest=f"keep_{rule}", action=Once,
                           type=_count(f"--keep-{rule}"),
                           metavar="N", help=f"keep the newest dump of each of the last N "
                                             f"{what}s that have one (UTC)")
    rules.add_argument("--keep-within", dest="keep_within", action=Once, type=_span,
                       metavar="DURATION",
                       help="keep every dump made within DURATION (1y2m3d4h) before the "
                            "newest complete dump")


def _count(flag: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        import re

        value = text.strip()
        if re.fullmatch(r"-?[0-9]+", value) and (int(value) >= 1 or int(value) == -1):
            return int(value)
        raise UsageError(f"db:cleanup {flag} {text!r}: expected a whole number ≥ 1 (-1: "
                         f"all); the newest dump is never deleted")
    return parse


def _span(text: str) -> str:
    from kompose_py.db.retention import parse_duration

    if not parse_duration(text, "db:cleanup --keep-within"):
        raise UsageError(f"db:cleanup --keep-within {text!r}: a span of 0 keeps nothing")
    return text.strip()


TABLE: tuple[CommandSpec, ...] = (
    CommandSpec("db:export", "dump each database stack's database", "stacks",
                "kompose_py.db.export:export_command", _export_arguments, hooked=True),
    CommandSpec("db:import", "load a dump into a stack's database, safely", "stacks",
                "kompose_py.db.restore:import_command", _import_arguments, hooked=True,
                prepare="kompose_py.db.restore:prepare_import", completes_dump=True),
    CommandSpec("db:verify", "prove a dump restores: checksum, a load into a throwaway "
                "database, row counts against its manifest", "stacks",
                "kompose_py.db.verify:verify_command", _verify_arguments, hooked=True,
                prepare="kompose_py.db.verify:prepare_verify", completes_dump=True),
    CommandSpec("db:cleanup", "delete the dumps a retention policy does not keep", "stacks",
                "kompose_py.db.upkeep:cleanup_command", _cleanup_arguments, hooked=True,
                epilog="A dump is kept when any rule keeps it; N=-1 keeps every bucket.\n"
                       "Without any --keep-* option the policy is DB_KEEP_LAST, "
                       "DB_KEEP_HOURLY, DB_KEEP_DAILY,\nDB_KEEP_WEEKLY, DB_KEEP_MONTHLY, "
                       "DB_KEEP_YEARLY, DB_KEEP_WITHIN from the stack's\nenvironment; with "
                       "neither, the newest dump only. --dry-run shows each dump's fate."),
    CommandSpec("db:list", "list each stack's dumps", "report",
                "kompose_py.cli.listing:list_db_dumps"),
    CommandSpec("db:shell", "an interactive psql on one stack's database, wherever it lives",
                "stacks", "kompose_py.db.upkeep:shell_command", hooked=True,
                one_stack="opens one database", passthrough=True,
                epilog="Arguments go to psql: kompose web db:shell -c 'SELECT 1'"),
    CommandSpec("db:recover", "put right an import that was interrupted half-way", "stacks",
                "kompose_py.db.recovery:recover_command", hooked=True),
    CommandSpec("hooks:list", "list the hooks that apply to each stack", "report",
                "kompose_py.cli.listing:list_hooks"),
    CommandSpec("hooks:check", "check hooks files: syntax, misspelt names, permissions",
                "report", "kompose_py.cli.listing:check_hooks"),
    CommandSpec("env:show", "show each stack's environment and where each value comes from",
                "report", "kompose_py.cli.envview:show"),
    CommandSpec("env:check", "check each stack's environment", "report",
                "kompose_py.cli.envview:check"),
)
BY_NAME = {spec.name: spec for spec in TABLE}


def spec_for(command: str) -> CommandSpec:
    """The kompose command named ``command``; a usage error (with the closest name) when
    there is none."""
    spec = BY_NAME.get(command)
    if spec is not None:
        return spec
    import difflib  # only for this message

    close = difflib.get_close_matches(command, BY_NAME, n=1)
    raise UsageError(f"unknown kompose command {command!r}",
                     hint=f"did you mean {close[0]}?" if close
                     else "kompose commands: " + ", ".join(BY_NAME))


def load(target: str) -> Any:
    """The function a ``module:function`` entry names."""
    import importlib

    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)
