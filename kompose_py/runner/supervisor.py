"""Signals and cancellation for one kompose run: which children are running (their groups, the
ones that keep the terminal, what they started elsewhere), what a first and a second Ctrl-C,
SIGTERM or SIGHUP do, and the files that must not outlive the run."""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import stat
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from kompose_py.runner.command import Command, RemoteStop
from kompose_py.runner.proctree import _family, _kill, _killpg, _process_table, _signal_family

# Termination signals that cancel a run as Ctrl-C does: a scheduler's stop (systemctl,
# timeout, cron, CI) sends SIGTERM, a closed terminal SIGHUP. Exit status: 128 + number.
CANCEL_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


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
        self._abort: dict[int, Command] = {}  # what a second signal runs for them
        # Files that must not outlive the run, even one ended at once (partial dumps).
        self._temporary: set[Path] = set()
        # What removes temporary things elsewhere (a dump copied into a database's
        # container): run by a second signal too, and waited for.
        self._cleanups: dict[int, Command] = {}
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
            aborts = [_start_quietly(cmd) for cmd in
                      [*self._abort.values(), *self._cleanups.values()]]
            for child, cmd in aborts:
                if child is not None:
                    try:
                        child.wait(timeout=cmd.timeout or 30)
                    except subprocess.TimeoutExpired:
                        _killpg(child.pid, signal.SIGKILL)
            for path in list(self._temporary):
                with contextlib.suppress(OSError):
                    if os.path.isdir(path) and not os.path.islink(path):
                        shutil.rmtree(path, ignore_errors=True)  # a directory archive's
                    else:
                        os.unlink(path)  # a partial dump must never look like a dump
            if self.on_abort is not None:
                with contextlib.suppress(Exception):
                    self.on_abort()
            os._exit(self.exit_code)
        self.signum = signum
        self.forwarded = signum
        if signum == signal.SIGHUP:
            _leave_terminal()
            # Passed on as SIGTERM: the terminal is gone, and a child that would die of
            # SIGHUP on the spot (Compose, leaving its containers running) must stop as a
            # service manager's stop asks it to.
            self.forwarded = signal.SIGTERM
        self.cancelled.set()
        name = signal.Signals(signum).name
        again = "Ctrl-C" if signum == signal.SIGINT else "a second signal"
        # os.write, not sys.stderr: the handler may interrupt a buffered write in progress.
        with contextlib.suppress(OSError):
            os.write(2, f"\nkompose: {'interrupted' if signum == signal.SIGINT else name}; "
                        f"running error and finally hooks ({again} to stop at once)\n"
                        .encode())
        self._signal_all(self.forwarded)

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
        table = _process_table() if groups or foreground else {}
        for pgid, call_id in groups:
            # The whole family, found while the leader still lives: its children that left
            # the group are still its children now.
            _signal_family(pgid, _family(pgid, call_id, table), table, sig)
        if sig != signal.SIGINT:  # the terminal already sent Ctrl-C to the foreground
            for pid in foreground:
                # With its descendants: `docker compose` on a terminal does not pass a SIGTERM
                # on to the Compose plugin it runs in its own process group.
                for member in _family(pid, None, table) or (pid,):
                    _kill(member, sig)

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

    @contextlib.contextmanager
    def remote_temporary(self, remove: Command) -> Iterator[None]:
        """While inside: ``remove`` (which deletes something kompose put elsewhere) is run by
        a second signal's immediate end; the caller runs it otherwise."""
        key = id(remove)
        with self._lock:
            self._cleanups[key] = remove
        try:
            yield
        finally:
            with self._lock:
                self._cleanups.pop(key, None)

    def add(self, pgid: int, foreground: bool = False, call_id: str | None = None,
            remote: RemoteStop | None = None, abort: Command | None = None) -> None:
        with self._lock:
            if foreground:
                self._foreground.add(pgid)
            else:
                self._groups[pgid] = call_id
            if remote is not None:
                self._remote[pgid] = remote
            if abort is not None:
                self._abort[pgid] = abort

    def discard(self, pgid: int) -> None:
        with self._lock:
            self._groups.pop(pgid, None)
            self._foreground.discard(pgid)
            self._remote.pop(pgid, None)
            self._abort.pop(pgid, None)


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
            if not _is_terminal(fd):
                continue
            if devnull < 0:
                devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, fd)
        except OSError:
            continue
    if devnull > 2:
        os.close(devnull)


def _start_quietly(cmd: Command) -> tuple[subprocess.Popen[bytes] | None, Command]:
    try:
        return subprocess.Popen(cmd.argv, cwd=cmd.cwd, env=dict(cmd.env),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True), cmd
    except Exception:
        return None, cmd


def _is_terminal(fd: int) -> bool:
    """A terminal, also one that already hung up: the window closes first and SIGHUP comes
    after, by which time isatty() fails (its ioctl answers EIO) and every write too."""
    import errno
    import termios

    try:
        if os.isatty(fd):
            return True
        if not stat.S_ISCHR(os.fstat(fd).st_mode):
            return False
        termios.tcgetattr(fd)
    except termios.error as exc:
        return bool(exc.args) and exc.args[0] == errno.EIO
    except OSError:
        return False
    return True
