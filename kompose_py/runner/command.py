"""What a process to start is (:class:`Command`), how it ended (:class:`Outcome`), and the one
way kompose says why something failed, in one line (:func:`failure_line`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

Status = Literal["success", "failed", "timeout", "cancelled"]


@dataclass(frozen=True, eq=False, repr=False)
class Command:
    """One process to start: argv, folder, environment and how its streams go."""

    argv: tuple[str, ...]
    cwd: Path
    env: Mapping[str, str] = field(repr=False)
    # "inherit": kompose's stdin (exec -T < file works); "null": /dev/null.
    stdin: Literal["inherit", "null"] = "inherit"
    # Writes the child's stdin from a thread (a dump decompressed on the fly). If it raises,
    # the child's group is killed before stdin closes, so a truncated input is never
    # mistaken for a complete one; the run then fails with the feeder's error.
    feeder: Callable[[IO[bytes]], None] | None = field(default=None, compare=False)
    # "inherit": kompose's stdout; "null": discarded; "capture": kept in Outcome.stdout (a
    # read-only query's short answer); a Path: a new file, created 0600 without following a
    # symlink (pg_dump writes the dump there; the file must not exist yet).
    stdout: Literal["inherit", "null", "capture"] | Path = "inherit"
    # Reads the child's stdout from a thread (a dump compressed on the fly). If it raises
    # (a full disk), the child's group is killed and the run fails with the drain's error.
    drain: Callable[[IO[bytes]], None] | None = field(default=None, compare=False)
    # Keep the last lines of stderr for the error message (shown live unless echo_stderr
    # is off).
    capture_stderr: bool = False
    echo_stderr: bool = True
    timeout: float | None = None
    # Mark the child and its descendants with a KOMPOSE_CALL_ID of their own (hooks), so that
    # a descendant that left the group and the session still ends with the call.
    tagged: bool = False
    # Keep the terminal: run in kompose's own process group so a TTY, job control and
    # Ctrl-C behave as if the user ran the command directly (exec, run, logs -f).
    foreground: bool = False
    # Applied to every line of the child's output that kompose relays or keeps (its stdout
    # and stderr when they go through a pipe): the stack's secrets never reach the screen,
    # a log or a report, even when psql or pg_dump repeat one.
    mask: Callable[[str], str] | None = field(default=None, compare=False, repr=False)
    # Not ended by Ctrl-C/SIGTERM: one step of a database swap that must finish once begun
    # (the swap checks for cancellation before it starts, never half-way).
    shielded: bool = False
    # Ends what the command started beyond this machine's process tree (pg_dump in a
    # container: signals reach the local `docker exec` client only). Run once the command
    # has ended, when its time-out or a cancellation stopped it; on a second signal, started
    # and left to finish by itself.
    remote_stop: RemoteStop | None = None
    # Run by a second signal, and waited for (up to its time-out), before kompose ends: what
    # the command started must not outlive it and would, SIGKILLed (Compose ignores a second
    # signal and leaves an attached up's containers to a graceful stop nobody waits for).
    on_abort: Command | None = None


@dataclass(frozen=True, eq=False, repr=False)
class RemoteStop:
    """How to end what a command started elsewhere: ``command`` exits 0 when it could look
    (whether or not anything was left to end); ``what`` names it for the warning."""

    command: Command
    what: str


@dataclass(frozen=True, eq=False, repr=False)
class Outcome:
    """How a :class:`Command` ended."""

    status: Status
    exit_code: int
    duration: float
    error: str | None = None  # the program could not be started, and why
    stderr_tail: tuple[str, ...] = ()
    stdout: bytes = b""  # with Command.stdout == "capture"
    warning: str | None = None  # what it started elsewhere could not be ended

    @property
    def ok(self) -> bool:
        return self.status == "success"

    @property
    def reason(self) -> str:
        """Why it failed, in one line (:func:`failure_line` of what it printed on stderr), else
        why it could not start, else its exit status."""
        return failure_line(self.stderr_tail, self.error or f"exit {self.exit_code}")



# PostgreSQL's severities and the error words programs use, in the order a line is searched.
_MARKERS = ("ERROR:", "FATAL:", "error:", "Error:", "Error response", "denied")


def failure_line(lines: Sequence[str], fallback: str = "", *, strip_marker: bool = False) -> str:
    """Why a program failed, in one line: the first of its lines that names an error, else its
    last line, else ``fallback``. ``strip_marker``: keep only what follows PostgreSQL's
    ``ERROR:``/``FATAL:`` (an admin statement's message stands alone in a sentence)."""
    for line in lines:
        for marker in _MARKERS:
            if marker in line or (marker == "denied" and "denied" in line.lower()):
                if strip_marker and marker in ("ERROR:", "FATAL:", "error:"):
                    return line[line.index(marker) + len(marker):].strip()
                return line.strip()
    for line in reversed(lines):
        if line.strip():
            return line.strip()
    return fallback.strip()
