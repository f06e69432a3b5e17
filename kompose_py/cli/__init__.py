"""The command-line adapter: parse, call the core, render, map errors to exit codes.

This package is the only one that imports typer; nothing in the core imports it.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from typing import Any

from kompose_py.cli.argv import wants_json
from kompose_py.errors import ConfigError, KomposeError, UsageError

USAGE_HINT = "usage: kompose [OPTIONS] PATTERN COMMAND [ARGS]...   (see kompose --help)"


def _error(message: str, hint: str | None, exit_code: int, as_json: bool,
           known: dict[str, Any] | None = None) -> int:
    """``known``: what the command line said, when it was parsed (command, dry_run)."""
    sys.stderr.write(f"kompose: error: {message}\n")
    if hint:
        sys.stderr.write(f"kompose: hint: {hint}\n")
    if as_json:
        from kompose_py.cli.report import error_document, write_document

        write_document(sys.stdout, {**error_document(message, hint, exit_code),
                                    **(known or {})})
    return exit_code


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    as_json = wants_json(args)
    known: dict[str, Any] = {}
    try:
        from kompose_py.cli.app import ParseUsageError, parse

        try:
            parsed = parse(args)
        except ParseUsageError as exc:
            return _error(exc.message, USAGE_HINT, 2, as_json)
        if isinstance(parsed, int):
            return parsed
        from kompose_py.cli.dispatch import execute, split_command_line

        if parsed.list_stacks or parsed.status:
            known = {"command": "--list" if parsed.list_stacks else "--status"}
        else:
            with contextlib.suppress(UsageError):  # not parsable: both stay null
                line = split_command_line(parsed.args, parsed.dry_run)
                known = {"command": line.command, "dry_run": line.dry_run}

        return execute(parsed)
    except KomposeError as exc:
        hint = exc.hint
        # A configuration error (a .env or hooks.sh that cannot be read) says what to fix
        # itself; the command-line synopsis would only distract from it.
        if isinstance(exc, UsageError) and not isinstance(exc, ConfigError) and hint is None:
            hint = USAGE_HINT
        return _error(exc.message, hint, exc.exit_code, as_json, known)
    except KeyboardInterrupt:  # before the run installed its own handling
        return _error("interrupted", None, 130, as_json, known)
    except BrokenPipeError:
        # `kompose --list | head`: the reader left; that is not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as exc:
        # The last net: one line, never a traceback (it may show a merged environment).
        from kompose_py.lifecycle import internal_error
        from kompose_py.masking import mask, secret_values

        message = mask(internal_error(exc), secret_values(dict(os.environ)))
        return _error(message, "set KOMPOSE_DEBUG=1 for the traceback", 1, as_json, known)
