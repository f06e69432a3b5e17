"""The only place that starts processes.

Every side effect is a :class:`Command` (an argv list, never a shell string). A real
:class:`Runner` starts it; a :class:`DryRunner` returns success without starting anything,
so the plan printed in dry-run is by construction what a real run executes.

Process groups: unless a command needs the terminal, each child starts in a session of its
own, so a time-out or Ctrl-C reaches the child and everything it started (a hook's
``sleep 1000 &`` included) and nothing survives it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

Status = Literal["success", "failed", "timeout", "cancelled"]

KILL_GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]
    cwd: Path
    env: Mapping[str, str] = field(repr=False)
    # "inherit": kompose's stdin (exec -T < file works); "null": /dev/null; a Path: that file.
    stdin: Literal["inherit", "null"] | Path = "inherit"
    # Write stdout to this file instead of kompose's stdout (pg_dump streams the dump there).
    stdout_file: Path | None = None
    timeout: float | None = None
    # Keep the terminal: run in kompose's own process group so a TTY, job control and
    # Ctrl-C behave as if the user ran the command directly (exec, run, logs -f).
    foreground: bool = False


@dataclass(frozen=True)
class Outcome:
    status: Status
    exit_code: int
    duration: float
    error: str | None = None  # the program could not be started, and why

    @property
    def ok(self) -> bool:
        return self.status == "success"


class Supervisor:
    """Tracks running children so Ctrl-C and time-outs reach whole process groups."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._groups: set[int] = set()
        self.cancelled = threading.Event()

    def install(self) -> None:
        signal.signal(signal.SIGINT, self._on_interrupt)

    def _on_interrupt(self, signum: int, frame: object) -> None:
        if self.cancelled.is_set():
            # Second Ctrl-C: end at once, taking every child group along.
            self._signal_all(signal.SIGKILL)
            os._exit(130)
        self.cancelled.set()
        sys.stderr.write("\nkompose: interrupted; finishing error and finally hooks "
                         "(Ctrl-C again to stop at once)\n")
        self._signal_all(signal.SIGINT)

    def _signal_all(self, sig: int) -> None:
        with self._lock:
            groups = list(self._groups)
        for pgid in groups:
            _killpg(pgid, sig)

    def add(self, pgid: int) -> None:
        with self._lock:
            self._groups.add(pgid)

    def discard(self, pgid: int) -> None:
        with self._lock:
            self._groups.discard(pgid)


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _end_group(proc: subprocess.Popen[bytes], pgid: int, grace: float) -> None:
    """SIGTERM to the whole group, a grace period, then SIGKILL to whatever is left."""
    _killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if _group_alive(pgid):
        _killpg(pgid, signal.SIGKILL)
    proc.wait()


class Runner:
    """Runs commands for real."""

    dry_run = False

    def __init__(self, supervisor: Supervisor | None = None,
                 stdout: IO[bytes] | int | None = None,
                 kill_grace: float = KILL_GRACE_SECONDS) -> None:
        self.supervisor = supervisor or Supervisor()
        # Where children write their stdout (None: kompose's own); --json sends it to stderr.
        self.stdout = stdout
        self.kill_grace = kill_grace

    def run(self, cmd: Command, on_start: Callable[[int], None] | None = None) -> Outcome:
        start = time.monotonic()
        stdin_handle: IO[bytes] | None = None
        stdout_handle: IO[bytes] | None = None
        try:
            stdin: int | IO[bytes] | None
            if cmd.stdin == "inherit":
                stdin = None
            elif cmd.stdin == "null":
                stdin = subprocess.DEVNULL
            else:
                stdin = stdin_handle = open(cmd.stdin, "rb")  # noqa: SIM115 - closed below
            stdout: int | IO[bytes] | None = self.stdout
            if cmd.stdout_file is not None:
                stdout = stdout_handle = open(cmd.stdout_file, "xb")  # noqa: SIM115
            try:
                proc = subprocess.Popen(
                    cmd.argv, cwd=cmd.cwd, env=dict(cmd.env), stdin=stdin, stdout=stdout,
                    start_new_session=not cmd.foreground,
                )
            except OSError as exc:
                reason = exc.strerror or str(exc)
                if isinstance(exc, FileNotFoundError) and exc.filename in (cmd.argv[0], None):
                    reason = "program not found"
                return Outcome("failed", 127, time.monotonic() - start,
                               error=f"cannot run {cmd.argv[0]}: {reason}")
            if on_start is not None:
                on_start(proc.pid)
            return self._wait(proc, cmd, start)
        finally:
            for handle in (stdin_handle, stdout_handle):
                if handle is not None:
                    handle.close()

    def _wait(self, proc: subprocess.Popen[bytes], cmd: Command, start: float) -> Outcome:
        own_group = not cmd.foreground
        if own_group:
            self.supervisor.add(proc.pid)
        timed_out = False
        try:
            try:
                proc.wait(timeout=cmd.timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                _end_group(proc, proc.pid, self.kill_grace)
            if own_group and self.supervisor.cancelled.is_set() and _group_alive(proc.pid):
                # The leader is gone after Ctrl-C; its background children go too.
                _end_group(proc, proc.pid, self.kill_grace)
        finally:
            if own_group:
                self.supervisor.discard(proc.pid)
        duration = time.monotonic() - start
        code = proc.returncode
        exit_code = 128 - code if code < 0 else code  # killed by a signal: shell convention
        status: Status
        if timed_out:
            status = "timeout"
        elif code == 0:
            status = "success"
        elif self.supervisor.cancelled.is_set():
            status = "cancelled"
        else:
            status = "failed"
        return Outcome(status, exit_code, duration)


class DryRunner(Runner):
    """Starts nothing; every command "succeeds" so the whole plan is shown."""

    dry_run = True

    def run(self, cmd: Command, on_start: Callable[[int], None] | None = None) -> Outcome:
        return Outcome("success", 0, 0.0)
