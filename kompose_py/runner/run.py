"""The only place that starts processes.

Every side effect is a :class:`Command` (an argv list, never a shell string). A real
:class:`Runner` starts it; a :class:`DryRunner` returns success without starting anything,
so the plan printed in dry-run is by construction what a real run executes.

Process groups: unless a command needs the terminal, each child starts in a session of its
own, so a time-out or Ctrl-C reaches the child and everything it started (a hook's
``sleep 1000 &`` included) and nothing survives it. A hook's children that leave its group or
its session (``set -m``, ``setsid``) are still found, by the process tree and by a call id in
their environment (``KOMPOSE_CALL_ID``), and end with it (proctree.py).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import IO

from kompose_py.files import new_private_file
from kompose_py.runner.command import Command, Outcome, RemoteStop, Status
from kompose_py.runner.proctree import CALL_ID, _end_group, _kill, _killpg
from kompose_py.runner.supervisor import Supervisor

_call_numbers = itertools.count(1)

class Runner:
    """Runs commands for real."""

    dry_run = False

    def __init__(self, supervisor: Supervisor | None = None, *, to_stderr: bool = False,
                 prefix: str | None = None, lock: threading.Lock | None = None,
                 tail_stderr: bool = False) -> None:
        self.supervisor = supervisor or Supervisor()
        # Relay children's stderr through a pipe (whole lines, echoed live) to keep its last
        # lines: a failure's reason for the summary. Off on a terminal, where programs keep
        # their own progress displays and the user saw the error as it came.
        self.tail_stderr = tail_stderr
        # --json: stdout carries the report alone, so children write to stderr.
        self.to_stderr = to_stderr
        # Several stacks at once: every line of a child is relayed as "<prefix> | line",
        # whole, under the lock that kompose's own lines take too.
        self.prefix = prefix
        self.lock = lock or threading.Lock()

    def labelled(self, prefix: str) -> Runner:
        """The same runner, relaying children's lines with a stack's name in front."""
        return type(self)(self.supervisor, to_stderr=self.to_stderr, prefix=prefix,
                          lock=self.lock, tail_stderr=self.tail_stderr)

    def run(self, cmd: Command) -> Outcome:
        start = time.monotonic()
        handles: list[IO[bytes]] = []
        try:
            stdin: int | IO[bytes] | None = None
            if cmd.feeder is not None:
                stdin = subprocess.PIPE
            elif cmd.stdin == "null" or self.prefix:
                stdin = subprocess.DEVNULL  # stacks running side by side share no terminal
            stdout: int | IO[bytes] | None = None
            if cmd.stdout == "null":
                stdout = subprocess.DEVNULL
            elif cmd.stdout == "capture" or cmd.drain is not None:
                stdout = subprocess.PIPE
            elif isinstance(cmd.stdout, Path):
                try:
                    stdout = new_private_file(cmd.stdout)
                except OSError as exc:
                    return Outcome("failed", 1, time.monotonic() - start,
                                   error=f"cannot write {cmd.stdout}: {exc.strerror or exc}")
                handles.append(stdout)
            elif self.prefix:
                stdout = subprocess.PIPE
            elif self.to_stderr:
                stdout = sys.stderr.fileno()
            piped = cmd.capture_stderr or self.prefix or (self.tail_stderr and not cmd.foreground)
            stderr = subprocess.PIPE if piped else None
            # Error and finally hooks start after a cancellation on purpose; a command whose
            # start crossed the cancellation must still get the signal (below, in _wait).
            cancelled_before = self.supervisor.cancelled.is_set()
            env = dict(cmd.env)
            call_id = None
            if cmd.tagged:
                call_id = f"{os.getpid()}.{next(_call_numbers)}"
                env[CALL_ID] = call_id
            try:
                # preexec_fn only there, from the main thread (where signal.signal works):
                # it only sets one disposition between fork and exec.
                hangup_proof = cmd.foreground and \
                    threading.current_thread() is threading.main_thread()
                proc = subprocess.Popen(
                    cmd.argv, cwd=cmd.cwd, env=env, stdin=stdin, stdout=stdout,
                    stderr=stderr, start_new_session=not cmd.foreground,
                    preexec_fn=_ignore_hangup if hangup_proof else None,  # noqa: PLW1509
                )
            except OSError as exc:
                reason = exc.strerror or str(exc)
                if isinstance(exc, FileNotFoundError) and exc.filename in (cmd.argv[0], None):
                    reason = "program not found"
                return Outcome("failed", 127, time.monotonic() - start,
                               error=f"cannot run {cmd.argv[0]}: {reason}")
            return self._wait(proc, cmd, start, call_id, cancelled_before)
        finally:
            for handle in handles:
                handle.close()

    def _relay(self, pipe: IO[bytes], to_stderr: bool, echo: bool,
               tail: deque[str] | None,
               mask: Callable[[str], str] | None = None) -> threading.Thread:
        """Copy a child's stream line by line (whole lines only) and keep its last lines."""
        def copy() -> None:
            for raw in iter(pipe.readline, b""):
                line = raw.decode(errors="replace")
                if mask is not None:
                    line = mask(line)
                if echo:
                    out = sys.stderr if to_stderr else sys.stdout
                    text = f"{self.prefix} | {line}" if self.prefix else line
                    if not text.endswith("\n"):
                        text += "\n"
                    try:
                        with self.lock:
                            out.write(text)
                            out.flush()
                    except BrokenPipeError:
                        # `kompose -j 4 "*" ps | head -1`: keep draining the child's pipe (it
                        # must never block on it), stop the run.
                        self.supervisor.output_closed(out.fileno())
                if tail is not None and line.strip():
                    tail.append(line.rstrip("\n"))
            pipe.close()

        thread = threading.Thread(target=copy, daemon=True)
        thread.start()
        return thread

    def _wait(self, proc: subprocess.Popen[bytes], cmd: Command, start: float,
              call_id: str | None = None, cancelled_before: bool = True) -> Outcome:
        own_group = not cmd.foreground
        if not cmd.shielded:
            # A shielded step (one statement of a database swap) is never signalled.
            self.supervisor.add(proc.pid, foreground=not own_group, call_id=call_id,
                                remote=cmd.remote_stop, abort=cmd.on_abort)
            if not cancelled_before and self.supervisor.cancelled.is_set():
                # The run was cancelled while this child started: the signal sent to the
                # running groups may have missed it (a stack beside the one whose output
                # closed).
                if own_group:
                    _killpg(proc.pid, self.supervisor.forwarded)
                else:
                    _kill(proc.pid, self.supervisor.forwarded)
        timed_out = False
        warning = None
        tail: deque[str] = deque(maxlen=8)
        relays = []
        captured: list[bytes] = []
        drain_error: list[BaseException] = []
        if proc.stdout is not None and cmd.drain is not None:
            relays.append(_start(_drain, cmd.drain, proc, drain_error))
        elif proc.stdout is not None and cmd.stdout == "capture":
            relays.append(_start(_collect, proc.stdout, captured))
        elif proc.stdout is not None:
            relays.append(self._relay(proc.stdout, self.to_stderr, True, None, cmd.mask))
        if proc.stderr is not None:
            relays.append(self._relay(proc.stderr, True, cmd.echo_stderr, tail, cmd.mask))
        feeder = None
        feed_error: list[BaseException] = []
        if cmd.feeder is not None and proc.stdin is not None:
            feeder = threading.Thread(
                target=_feed, args=(cmd.feeder, proc, feed_error), daemon=True)
            feeder.start()
        try:
            try:
                proc.wait(timeout=cmd.timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                _end_group(proc, call_id)
            if own_group and not cmd.shielded and self.supervisor.cancelled.is_set():
                # The leader is gone after Ctrl-C; its background children go too, also
                # those that left its group or session.
                _end_group(proc, call_id)
        finally:
            cancelled = not cancelled_before and self.supervisor.cancelled.is_set()
            if cmd.remote_stop is not None and (timed_out or (cancelled and not cmd.shielded)):
                warning = self._stop_remote(cmd.remote_stop)
            # After the remote stop: a second signal meanwhile starts it again (harmless).
            self.supervisor.discard(proc.pid)
            if feeder is not None:
                feeder.join()
            for relay in relays:
                # A background child the command left running may hold the pipe open:
                # its later lines are still relayed, but the run does not wait for it.
                # (A drain writes the dump: it is waited for to the end.)
                relay.join(timeout=None if cmd.drain is not None else 2.0)
        duration = time.monotonic() - start
        code = proc.returncode
        if code != 0 and not self.supervisor.cancelled.is_set():
            self.supervisor.check_outputs((2,) if self.to_stderr else (1, 2))
        exit_code = 128 - code if code < 0 else code  # killed by a signal: shell convention
        status: Status
        error = None
        if feed_error:
            # An input that refused itself says why in its own words (a dump that is unsafe).
            error = getattr(feed_error[0], "message", None) or \
                f"reading input failed: {_reason(feed_error[0])}"
            status = "failed"
            exit_code = 1  # kompose ended the child (its 143 would read as a signal)
        elif drain_error:
            status, error = "failed", f"writing output failed: {_reason(drain_error[0])}"
            exit_code = exit_code or 1
        elif timed_out:
            status = "timeout"
        elif code == 0:
            status = "success"
        elif self.supervisor.cancelled.is_set():
            status = "cancelled"
            # Whatever the child made of the signal (Compose exits 130 on SIGTERM): the run's
            # 128 + signal, as KOMPOSE_EXIT_CODE and the summary say.
            exit_code = self.supervisor.exit_code
        else:
            status = "failed"
        return Outcome(status, exit_code, duration, error, tuple(tail), b"".join(captured),
                       warning)

    def _stop_remote(self, stop: RemoteStop) -> str | None:
        """End what a stopped command started elsewhere; a warning when that failed."""
        outcome = self.run(replace(stop.command, stdin="null", stdout="capture",
                                   capture_stderr=True, echo_stderr=False, shielded=True,
                                   timeout=stop.command.timeout or 30))
        if outcome.ok:
            return None
        return f"could not stop {stop.what} ({outcome.reason}); it may still be running there"


def _ignore_hangup() -> None:
    """In a child that keeps the terminal, before exec: a closed terminal's SIGHUP, sent to
    the whole foreground group, must not kill it on the spot (Compose dies of it and leaves
    the containers of an attached up running; Go programs keep an inherited SIG_IGN). kompose
    gets that SIGHUP too and passes it on as SIGTERM."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _start(target: Callable[..., None], *args: object) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def _collect(pipe: IO[bytes], into: list[bytes]) -> None:
    while chunk := pipe.read(65536):
        into.append(chunk)
    pipe.close()


def _drain(drain: Callable[[IO[bytes]], None], proc: subprocess.Popen[bytes],
           errors: list[BaseException]) -> None:
    assert proc.stdout is not None
    try:
        drain(proc.stdout)
    except Exception as exc:
        errors.append(exc)
        _end_group(proc)
    finally:
        proc.stdout.close()


def _feed(feeder: Callable[[IO[bytes]], None], proc: subprocess.Popen[bytes],
          errors: list[BaseException]) -> None:
    assert proc.stdin is not None
    try:
        feeder(proc.stdin)
    except BrokenPipeError:
        pass  # the child stopped reading (it failed); its own exit status tells why
    except Exception as exc:
        errors.append(exc)
        # Kill first, close after: the child must never see a clean end of a cut input.
        _end_group(proc)
    finally:
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()


class DryRunner(Runner):
    """Starts nothing; every command "succeeds" so the whole plan is shown."""

    dry_run = True

    def run(self, cmd: Command) -> Outcome:
        return Outcome("success", 0, 0.0)

