"""Cancelling an attached `kompose STACK up` (no -d), end to end against the real engine
(issue 17, item 6): whichever way it is cancelled — Ctrl-C, SIGTERM, SIGHUP, a second signal —
no container of the stack is left running, no file of kompose's is left in $TMPDIR, the error
and finally hooks run with KOMPOSE_STATUS=cancelled (one signal), and a second signal still
ends kompose without waiting for Compose's graceful stop.

Measured with Compose v2.40.3 alone (attached `docker compose up`, no terminal): SIGINT and
SIGTERM stop the containers gracefully and exit 130; SIGHUP to its process group kills Compose
at once and leaves the containers running; a second SIGINT/SIGTERM is ignored (Compose waits
for the whole stop_grace_period). kompose must do at least as well on every one, and better
where Compose alone leaves containers behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_stacks, project_containers
from tests.test_hook_runtime import LOG, entries

# Stops at once on SIGTERM (tini forwards it; sh is not PID 1).
QUICK = """services:
  app:
    image: busybox:latest
    pull_policy: never
    init: true
    command: ["sh", "-c", "echo ready; while :; do sleep 1; done"]
"""
# Ignores SIGTERM: a graceful stop lasts the whole stop_grace_period, so only a kill ends it
# while kompose is still waiting (the hang guard below is far shorter than the grace).
STUBBORN = """services:
  app:
    image: busybox:latest
    pull_policy: never
    init: true
    stop_grace_period: 600s
    command: ["sh", "-c", "trap '' TERM; echo ready; while :; do sleep 1; done"]
"""
HOOKS = LOG + """
hook_error_up() { log; }
hook_finally_up() { log; }
"""
HANG_GUARD = 120.0  # far below the stubborn service's grace: kompose did not wait for it


class Attached:
    """A real `kompose web up` without -d, in a session of its own (as a service manager or a
    job on a terminal runs it), its output read as it comes."""

    def __init__(self, tmp_path: Path, project: str, compose: str) -> None:
        self.tmpdir = tmp_path / "tmp"
        self.tmpdir.mkdir()
        self.log = tmp_path / "hooks.log"
        root = make_stacks(tmp_path / "root", {"web": {
            "compose.yaml": compose, "hooks.sh": HOOKS,
            ".env": f"COMPOSE_PROJECT_NAME={project}\n"}})
        self.project = project
        env = {**os.environ, "TMPDIR": str(self.tmpdir), "HOOK_LOG": str(self.log),
               # The fix may wait this long for Compose's own kill after a second signal.
               "KOMPOSE_KILL_GRACE": "10"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kompose_py", "--root", str(root), "web", "up"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=env, start_new_session=True)
        self._out: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in iter(self.proc.stdout.readline, b""):
            self._out.append(line)

    @property
    def output(self) -> str:
        return b"".join(self._out).decode(errors="replace")

    def wait_for(self, text: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            assert self.proc.poll() is None, f"kompose ended before {text!r}:\n{self.output}"
            assert time.monotonic() < deadline, f"no {text!r} in:\n{self.output}"
            time.sleep(0.05)

    def send(self, sig: int, to: str) -> None:
        if to == "group":  # a terminal's Ctrl-C or hangup reaches the whole job
            os.killpg(self.proc.pid, sig)
        else:  # systemctl stop, timeout, kill: the main process
            self.proc.send_signal(sig)

    def finish(self) -> int:
        code = self.proc.wait(timeout=HANG_GUARD)
        self._reader.join(timeout=10)
        return code


@pytest.fixture
def attached(tmp_path: Path, docker_engine: None,
             project_name: Callable[[str], str]) -> Any:
    made: list[Attached] = []

    def start(compose: str) -> Attached:
        run = Attached(tmp_path, project_name("up"), compose)
        made.append(run)
        return run

    yield start
    for run in made:  # whatever failed: nothing of the test outlives it
        if run.proc.poll() is None:
            os.killpg(run.proc.pid, signal.SIGKILL)
            run.proc.wait()


@pytest.mark.parametrize("to", ["pid", "group"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP],
                         ids=["SIGINT", "SIGTERM", "SIGHUP"])
def test_one_signal_stops_the_stack(attached: Any, sig: int, to: str) -> None:
    run = attached(QUICK)
    run.wait_for("ready")
    run.send(sig, to)
    code = run.finish()
    code_text = str(128 + sig)
    assert code == 128 + sig, run.output
    assert project_containers(run.project) == [], run.output
    assert os.listdir(run.tmpdir) == []
    assert [e[:3] for e in entries(run.log)] == [["hook_error_up", "cancelled", code_text],
                                                 ["hook_finally_up", "cancelled", code_text]]


@pytest.mark.parametrize("to", ["pid", "group"])
@pytest.mark.parametrize("signals", [
    (signal.SIGINT, signal.SIGINT), (signal.SIGTERM, signal.SIGTERM),
    (signal.SIGHUP, signal.SIGTERM), (signal.SIGINT, signal.SIGTERM),
], ids=["SIGINT-SIGINT", "SIGTERM-SIGTERM", "SIGHUP-SIGTERM", "SIGINT-SIGTERM"])
def test_a_second_signal_kills_the_stack_and_ends_kompose(attached: Any,
                                                          signals: tuple[int, int],
                                                          to: str) -> None:
    """The first signal starts Compose's graceful stop, which this service would make last
    600 s; the second comes while it is under way (Compose said "Stopping")."""
    first, second = signals
    run = attached(STUBBORN)
    run.wait_for("ready")
    run.send(first, to)
    run.wait_for("Stopping")
    run.send(second, to)
    code = run.finish()  # a hang here: kompose waited for the graceful stop
    assert code == 128 + first, run.output
    assert project_containers(run.project) == [], run.output
    assert os.listdir(run.tmpdir) == []
    # A second signal ends kompose at once: hooks that had not started do not run; any that
    # ran saw the cancellation.
    assert all(e[1] == "cancelled" for e in entries(run.log))


# -- on a terminal -------------------------------------------------------------------------
# A minimal interactive shell: session leader with the pseudo-terminal as its controlling
# terminal, one job in a process group of its own in the foreground, and a hangup passed on
# to the job's group, as bash does when its terminal closes.
SHELL = r"""
import fcntl, os, signal, sys, termios
fcntl.ioctl(0, termios.TIOCSCTTY, 0)
signal.signal(signal.SIGTTOU, signal.SIG_IGN)
pid = os.fork()
if pid == 0:
    os.setpgid(0, 0)
    os.tcsetpgrp(0, os.getpid())
    signal.signal(signal.SIGTTOU, signal.SIG_DFL)
    os.execvp(sys.argv[1], sys.argv[1:])
try:
    os.setpgid(pid, pid)
except OSError:
    pass
def hangup(signum, frame):
    try:
        os.killpg(pid, signal.SIGHUP)
    except OSError:
        pass
signal.signal(signal.SIGHUP, hangup)
_, status = os.waitpid(pid, 0)
code = os.waitstatus_to_exitcode(status)
sys.exit(128 - code if code < 0 else code)
"""


class OnTerminal:
    """`kompose web up` typed into a shell on a terminal: Compose keeps the terminal (it runs
    in kompose's process group) and its output comes through the terminal."""

    def __init__(self, tmp_path: Path, project: str, compose: str) -> None:
        import pty

        self.tmpdir = tmp_path / "tmp"
        self.tmpdir.mkdir()
        self.log = tmp_path / "hooks.log"
        root = make_stacks(tmp_path / "root", {"web": {
            "compose.yaml": compose, "hooks.sh": HOOKS,
            ".env": f"COMPOSE_PROJECT_NAME={project}\n"}})
        self.project = project
        env = {**os.environ, "TMPDIR": str(self.tmpdir), "HOOK_LOG": str(self.log),
               "TERM": "xterm", "KOMPOSE_KILL_GRACE": "10"}
        self.master, follower = pty.openpty()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SHELL, sys.executable, "-m", "kompose_py", "--root",
             str(root), "web", "up"],
            stdin=follower, stdout=follower, stderr=follower, env=env, start_new_session=True)
        os.close(follower)
        self._out: list[bytes] = []
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        import select

        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            self._out.append(data)

    @property
    def output(self) -> str:
        return b"".join(self._out).decode(errors="replace")

    def wait_for(self, text: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            assert self.proc.poll() is None, f"ended before {text!r}:\n{self.output}"
            assert time.monotonic() < deadline, f"no {text!r} in:\n{self.output}"
            time.sleep(0.05)

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def close_terminal(self) -> None:
        """The window is closed: the terminal hangs up (the shell gets SIGHUP from the kernel
        and passes it on to the job's process group)."""
        self._stop.set()
        self._reader.join()
        os.close(self.master)
        self.master = -1

    def finish(self) -> int:
        code = self.proc.wait(timeout=HANG_GUARD)
        self._stop.set()
        self._reader.join(timeout=10)
        if self.master >= 0:
            os.close(self.master)
            self.master = -1
        return code


@pytest.fixture
def on_terminal(tmp_path: Path, docker_engine: None,
                project_name: Callable[[str], str]) -> Iterator[Callable[[str], OnTerminal]]:
    made: list[OnTerminal] = []

    def start(compose: str) -> OnTerminal:
        run = OnTerminal(tmp_path, project_name("tty"), compose)
        made.append(run)
        return run

    yield start
    for run in made:
        if run.proc.poll() is None:
            os.killpg(run.proc.pid, signal.SIGKILL)
            run.proc.wait()
        for child in _job_processes(run.proc.pid):
            with contextlib.suppress(OSError):
                os.kill(child, signal.SIGKILL)


def _job_processes(session: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_bytes()
            except OSError:
                continue
            fields = stat[stat.rfind(b")") + 2:].split()
            if int(fields[3]) == session:
                found.append(int(entry.name))
    return found


def test_closing_the_terminal_stops_the_stack(on_terminal: Callable[[str], OnTerminal]) -> None:
    """Compose alone dies of the hangup at once and leaves its containers running."""
    run = on_terminal(QUICK)
    run.wait_for("ready")
    run.close_terminal()
    code = run.finish()
    assert code == 129, (entries(run.log), project_containers(run.project))
    assert project_containers(run.project) == []
    assert os.listdir(run.tmpdir) == []
    assert [e[:3] for e in entries(run.log)] == [["hook_error_up", "cancelled", "129"],
                                                 ["hook_finally_up", "cancelled", "129"]]


@pytest.mark.parametrize("keys", [b"\x03", b"\x03\x03"], ids=["ctrl-c", "ctrl-c-twice"])
def test_ctrl_c_typed_on_the_terminal(on_terminal: Callable[[str], OnTerminal],
                                      keys: bytes) -> None:
    run = on_terminal(STUBBORN if len(keys) > 1 else QUICK)
    run.wait_for("ready")
    run.type(keys[:1])
    if len(keys) > 1:
        run.wait_for("Stopping")
        run.type(keys[1:])
    code = run.finish()
    assert project_containers(run.project) == [], run.output
    assert os.listdir(run.tmpdir) == []
    assert code == 130, run.output
    rows = entries(run.log)
    assert all(e[1] == "cancelled" for e in rows), rows
