"""The one error family of kompose-py; the CLI maps each to an exit code."""

from __future__ import annotations


class KomposeError(Exception):
    """An error meant for the user: one line, an optional hint."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(KomposeError):
    """Bad command line or configuration found before anything ran."""

    exit_code = 2


class ConfigError(UsageError):
    """An unreadable .env and the like: reported before any stack starts."""


class NoStackError(KomposeError):
    exit_code = 3


class StepError(KomposeError):
    """A step of one stack failed in a way that is not a process exit code."""
