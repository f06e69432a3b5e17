"""The only place that starts processes.

Every side effect is a :class:`Command` (an argv list, never a shell string). A real
:class:`Runner` starts it; a :class:`DryRunner` returns success without starting anything,
so the plan printed in dry-run is by construction what a real run executes.

Process groups: unless a command needs the terminal, each child starts in a session of its
own, so a time-out or Ctrl-C reaches the child and everything it started (a hook's
``sleep 1000 &`` included) and nothing survives it. A hook's children that leave its group or
its session (``set -m``, ``setsid``) are still found, by the process tree and by a call id in
their environment (``KOMPOSE_CALL_ID``), and end with it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import select
import signal
import stat
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Literal

Status = Literal["success", "failed", "timeout", "cancelled"]

KILL_GRACE_SECONDS = 5.0
# Every hook call carries a unique value of this variable, inherited by everything it starts:
# what a hook left running outside its process group and session (`set -m`, `setsid`, a
# double fork) is found by it after a time-out or a cancellation.
CALL_ID = "KOMPOSE_CALL_ID"
_call_numbers = itertools.count(1)


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
        """Why it failed, in one line: the last line it printed on stderr, else why it could
        not start, else its exit status."""
        return ((self.stderr_tail[-1] if self.stderr_tail else self.error)
                or f"exit {self.exit_code}").strip()


# Termination signals that cancel a run as Ctrl-C does: a scheduler's stop (systemctl,
# timeout, cron, CI) sends SIGTERM, a closed terminal SIGHUP. Exit status: 128 + number.
CANCEL_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def kill_grace() -> float:
    """Seconds between SIGTERM and SIGKILL for a group that has to end: KOMPOSE_KILL_GRACE
    (tests set it short), else 5."""
    try:
        value = float(os.environ.get("KOMPOSE_KILL_GRACE") or KILL_GRACE_SECONDS)
    except ValueError:
        return KILL_GRACE_SECONDS
    return value if value >= 0 else KILL_GRACE_SECONDS


class Supervisor:
    """Tracks running children so Ctrl-C, SIGTERM, SIGHUP and time-outs reach whole process
    groups."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._groups: dict[int, str | None] = {}  # group leader -> its call id
        # Children that share kompose's own group (they keep the terminal): a terminal's
        # Ctrl-C reaches them by itself, a SIGTERM sent to kompose alone does not.
        self._foreground: set[int] = set()
        # Running commands that started something elsewhere: how to end it.
        self._remote: dict[int, RemoteStop] = {}
        # Files that must not outlive the run, even one ended at once (partial dumps).
        self._temporary: set[Path] = set()
        self.cancelled = threading.Event()
        self.signum: int | None = None  # the signal that cancelled the run
        self.forwarded: int = signal.SIGTERM  # what running children got on cancellation
        # Called (in the signal handler, before the process ends) on a second signal.
        self.on_abort: Callable[[], None] | None = None

    @property
    def exit_code(self) -> int:
        """128 + the cancelling signal: 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP."""
        return 128 + (self.signum or signal.SIGINT)

    def install(self) -> None:
        for sig in CANCEL_SIGNALS:
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        if self.cancelled.is_set():
            # A second signal: end at once, taking every child group along, and start (not
            # wait for) what ends their processes elsewhere.
            self._signal_all(signal.SIGKILL)
            for stop in list(self._remote.values()):
                with contextlib.suppress(Exception):
                    subprocess.Popen(stop.command.argv, cwd=stop.command.cwd,
                                     env=dict(stop.command.env), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
            for path in list(self._temporary):
                with contextlib.suppress(OSError):
                    os.unlink(path)  # a partial dump must never look like a dump
            if self.on_abort is not None:
                with contextlib.suppress(Exception):
                    self.on_abort()
            os._exit(self.exit_code)
        self.signum = signum
        self.forwarded = signum
        if signum == signal.SIGHUP:
            _leave_terminal()
        self.cancelled.set()
        name = signal.Signals(signum).name
        again = "Ctrl-C" if signum == signal.SIGINT else "a second signal"
        # os.write, not sys.stderr: the handler may interrupt a buffered write in progress.
        with contextlib.suppress(OSError):
            os.write(2, f"\nkompose: {'interrupted' if signum == signal.SIGINT else name}; "
                        f"running error and finally hooks ({again} to stop at once)\n"
                        .encode())
        self._signal_all(signum)

    def output_closed(self, fd: int) -> None:
        """The reader of kompose's stdout or stderr went away (``| head -1``). The stream goes
        to /dev/null from here on (nothing waits on it, nothing fails writing to it) and the
        run ends as after a termination signal: no new step or stack, running commands are
        asked to stop, error and finally hooks still run."""
        _to_devnull(fd)
        with self._lock:
            if self.cancelled.is_set():
                return
            self.signum = signal.SIGPIPE
            self.cancelled.set()
        with contextlib.suppress(OSError):
            os.write(2, b"kompose: output closed (its reader went away); stopping, "
                        b"error and finally hooks still run\n")
        self._signal_all(signal.SIGTERM)

    def check_outputs(self, fds: tuple[int, ...] = (1, 2)) -> None:
        """After a child failed: did it fail because the reader of a stream it shares with
        kompose went away (it died of SIGPIPE, ``kompose "*" ps | head -1``)? ``fds``: the
        streams the child shared (with --json its stdout is kompose's stderr: a gone reader
        of the JSON document is no reason for a child to fail)."""
        for fd in fds:
            if _reader_gone(fd):
                self.output_closed(fd)

    def _signal_all(self, sig: int) -> None:
        with self._lock:
            groups = list(self._groups.items())
            foreground = list(self._foreground)
        table = _process_table() if groups else {}
        for pgid, call_id in groups:
            # The whole family, found while the leader still lives: its children that left
            # the group are still its children now.
            _signal_family(pgid, _family(pgid, call_id, table), table, sig)
        if sig != signal.SIGINT:  # the terminal already sent Ctrl-C to the foreground
            for pid in foreground:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)

    @contextlib.contextmanager
    def temporary(self, path: Path) -> Iterator[Path]:
        """``path`` is removed by a second signal's immediate end too; the caller removes it
        otherwise."""
        with self._lock:
            self._temporary.add(path)
        try:
            yield path
        finally:
            with self._lock:
                self._temporary.discard(path)

    def add(self, pgid: int, foreground: bool = False, call_id: str | None = None,
            remote: RemoteStop | None = None) -> None:
        with self._lock:
            if foreground:
                self._foreground.add(pgid)
            else:
                self._groups[pgid] = call_id
            if remote is not None:
                self._remote[pgid] = remote

    def discard(self, pgid: int) -> None:
        with self._lock:
            self._groups.pop(pgid, None)
            self._foreground.discard(pgid)
            self._remote.pop(pgid, None)


def signal_name(supervisor: Supervisor) -> str | None:
    """``SIGTERM`` etc. when a signal cancelled the run."""
    return signal.Signals(supervisor.signum).name if supervisor.signum else None


def _to_devnull(fd: int) -> None:
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)


def _reader_gone(fd: int) -> bool:
    """Whether ``fd`` is a pipe whose reading end is closed (poll reports POLLERR)."""
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return False
        poller = select.poll()
        poller.register(fd, 0)  # POLLERR is always reported
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except OSError:
        return False


def _leave_terminal() -> None:
    """After SIGHUP the terminal is gone: writing to it fails (EIO) and must not stop the
    error and finally hooks or the summary. Streams that were the terminal go to /dev/null;
    pipes and files (a log, a --json reader) stay."""
    devnull = -1
    for fd in (0, 1, 2):
        try:
            if not os.isatty(fd):
                continue
            if devnull < 0:
                devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, fd)
        except OSError:
            continue
    if devnull > 2:
        os.close(devnull)


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


# pid -> (parent, process group, session, start time); live processes only (no zombies).
ProcessTable = dict[int, tuple[int, int, int, int]]


def _process_table() -> ProcessTable:
    """Every live process, from /proc (empty where there is no /proc: then only process
    groups are followed)."""
    table: ProcessTable = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return table
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stream:
                data = stream.read()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp session ... starttime": comm may hold spaces and ")".
        fields = data[data.rfind(b")") + 2:].split()
        if len(fields) < 20 or fields[0] in (b"Z", b"X"):
            continue  # a zombie needs no signal, only its parent's wait
        table[int(name)] = (int(fields[1]), int(fields[2]), int(fields[3]), int(fields[19]))
    return table


def _carries(pid: int, call_id: str) -> bool:
    """Whether the process's environment holds this call's id."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as stream:
            environ = stream.read()
    except OSError:
        return False
    return f"\0{CALL_ID}={call_id}\0".encode() in b"\0" + environ


def _family(leader: int, call_id: str | None, table: ProcessTable) -> dict[int, int]:
    """The processes that belong to the command led by ``leader`` (pid -> start time): its
    process group and session, every descendant (whatever group or session it moved to),
    and every process that carries its call id (descendants whose parent already ended)."""
    found = {pid: info[3] for pid, info in table.items()
             if pid == leader or info[1] == leader or info[2] == leader}
    if call_id is not None:
        found.update({pid: info[3] for pid, info in table.items()
                      if pid not in found and _carries(pid, call_id)})
    children: dict[int, list[int]] = {}
    for pid, info in table.items():
        children.setdefault(info[0], []).append(pid)
    todo = list(found)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found[child] = table[child][3]
                todo.append(child)
    found.pop(os.getpid(), None)
    return found


def _signal_family(pgid: int, members: Mapping[int, int], table: ProcessTable,
                   sig: int) -> None:
    """The signal once to every member: the group by killpg, the members outside it one by
    one. (Twice to one process would be two Ctrl-Cs to a hook that traps the first.)"""
    for pid in members:
        if table.get(pid, (0, 0))[1] != pgid:
            _kill(pid, sig)
    _killpg(pgid, sig)


def _end_group(proc: subprocess.Popen[bytes], call_id: str | None = None) -> None:
    """SIGTERM to the child's whole family (its group, its session, its descendants, what
    carries its call id), a grace period, then SIGKILL to whatever is left."""
    pgid = proc.pid
    grace = kill_grace()
    table = _process_table()
    members = _family(pgid, call_id, table)
    _signal_family(pgid, members, table, signal.SIGTERM)
    deadline = time.monotonic() + grace
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    while True:
        table = _process_table()
        # Still there: the same process (pid and start time), not a new one on a reused pid;
        # and whatever the family started meanwhile.
        left = {pid for pid, start in members.items() if pid in table and table[pid][3] == start}
        left.update(_family(pgid, call_id, table))
        if not left and not (table == {} and _group_alive(pgid)):
            break
        if time.monotonic() >= deadline:
            for pid in left:
                _kill(pid, signal.SIGKILL)
            _killpg(pgid, signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


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
                proc = subprocess.Popen(
                    cmd.argv, cwd=cmd.cwd, env=env, stdin=stdin, stdout=stdout,
                    stderr=stderr, start_new_session=not cmd.foreground,
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
                                remote=cmd.remote_stop)
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


def new_private_file(path: Path) -> IO[bytes]:
    """A new file only this user can read (a dump holds a whole database), never through a
    symlink someone left at that name."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    return os.fdopen(fd, "wb")


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
