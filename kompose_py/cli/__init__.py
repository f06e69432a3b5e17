"""The command-line adapter: parse, call the core, render, map errors to exit codes.

This package is the only one that imports typer; nothing in the core imports it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from kompose_py.errors import KomposeError, UsageError

USAGE_HINT = "usage: kompose [OPTIONS] PATTERN COMMAND [ARGS]...   (see kompose --help)"


def _error(message: str, hint: str | None) -> None:
    sys.stderr.write(f"kompose: error: {message}\n")
    if hint:
        sys.stderr.write(f"kompose: hint: {hint}\n")


def main(argv: Sequence[str] | None = None) -> int:
    from kompose_py.cli.app import ParseUsageError, parse

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        parsed = parse(args)
        if isinstance(parsed, int):
            return parsed
        from kompose_py.cli.commands import execute

        return execute(parsed)
    except ParseUsageError as exc:
        _error(exc.message, USAGE_HINT)
        return 2
    except KomposeError as exc:
        hint = exc.hint
        if isinstance(exc, UsageError) and hint is None:
            hint = USAGE_HINT
        _error(exc.message, hint)
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("\nkompose: interrupted\n")
        return 130
    except BrokenPipeError:
        # `kompose --list | head`: the reader left; that is not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0

