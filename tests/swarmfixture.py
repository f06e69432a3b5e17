"""pytest plugin: a real 3-node Docker Swarm (scripts/swarm-cluster.sh), once per session.

Register with `pytest_plugins = ["tests.swarmfixture"]` in the root conftest (or import the
fixture). Under KOMPOSE_REQUIRE_INTEGRATION=1, as in CI, a cluster that cannot be built fails
the tests that need it; otherwise they are skipped with the reason.

The cluster is taken down whatever happens: at the end of the session, when the test run is
interrupted (Ctrl-C: the script runs in its own session, so the terminal's SIGINT reaches only
pytest, which then runs `down`), and at interpreter exit for anything still standing.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "swarm-cluster.sh"
REQUIRE_INTEGRATION = os.environ.get("KOMPOSE_REQUIRE_INTEGRATION") == "1"
UP_TIMEOUT = 300
_standing: set[str] = set()  # state dirs of clusters not yet taken down


@dataclass(frozen=True)
class SwarmNode:
    host: str  # DOCKER_HOST of this node's own engine
    addr: str  # its address, reachable from the host (host-mode published ports)
    hostname: str  # its name in `docker node ls`, for node.hostname constraints


@dataclass(frozen=True)
class SwarmCluster:
    manager: str  # DOCKER_HOST of the manager (node 1)
    nodes: tuple[SwarmNode, ...]
    host_addr: str  # the host's address as the nodes see it
    state_dir: str
    exports: dict[str, str] = field(repr=False)

    @property
    def workers(self) -> tuple[SwarmNode, ...]:
        return self.nodes[1:]

    def env(
        self, node: SwarmNode | None = None, base: dict[str, str] | None = None
    ) -> dict[str, str]:
        """An environment for the docker CLI aimed at `node`'s engine (the manager by default)."""
        env = {
            k: v
            for k, v in (base if base is not None else os.environ).items()
            if not k.startswith("DOCKER_")
        }
        env["DOCKER_HOST"] = node.host if node else self.manager
        return env

    def docker(
        self,
        *args: str,
        node: SwarmNode | None = None,
        input: str | None = None,
        timeout: float = 120,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(
            ["docker", *args],
            env=self.env(node),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and r.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} -> {r.returncode}: {r.stderr.strip()}")
        return r

    def inspect(self, *args: str, node: SwarmNode | None = None) -> list[dict[str, object]]:
        data = json.loads(self.docker(*args, node=node).stdout or "[]")
        assert isinstance(data, list)
        return data


def parse_exports(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if line.startswith("export ") and "=" in line:
            key, _, value = line[len("export ") :].partition("=")
            out[key] = value
    return out


def cluster_from_exports(exports: dict[str, str]) -> SwarmCluster:
    count = int(exports["KSW_NODES"])
    nodes = tuple(
        SwarmNode(
            exports[f"KSW_N{k}_HOST"], exports[f"KSW_N{k}_ADDR"], exports[f"KSW_N{k}_HOSTNAME"]
        )
        for k in range(1, count + 1)
    )
    return SwarmCluster(
        exports["KSW_MANAGER"], nodes, exports["KSW_HOST_ADDR"], exports["KSW_DIR"], exports
    )


def _script_env(state: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["KSW_DIR"] = state
    return env


def take_down(state: str) -> None:
    """Run `down` to its end even if Ctrl-C is pressed again meanwhile."""
    if state not in _standing:
        return
    previous = signal.getsignal(signal.SIGINT)
    in_main = True
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: nothing to shield
        in_main = False
    try:
        subprocess.run(
            [str(SCRIPT), "down"],
            env=_script_env(state),
            capture_output=True,
            timeout=300,
            start_new_session=True,
        )
        _standing.discard(state)
    finally:
        if in_main:
            signal.signal(signal.SIGINT, previous)


def _take_down_all() -> None:
    for state in list(_standing):
        take_down(state)


atexit.register(_take_down_all)


def pytest_unconfigure(config: pytest.Config) -> None:
    _take_down_all()


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "the swarm cluster needs root (network namespaces, dockerd)"
    for tool in ("dockerd", "docker", "ip", "nsenter", "unshare", "setsid", "flock"):
        if shutil.which(tool) is None:
            return f"the swarm cluster needs {tool}"
    return None


def _unavailable(why: str) -> None:
    if REQUIRE_INTEGRATION:
        pytest.fail(f"swarm cluster required (KOMPOSE_REQUIRE_INTEGRATION=1): {why}", pytrace=False)
    pytest.skip(why)


@pytest.fixture(scope="session")
def swarm_cluster() -> Iterator[SwarmCluster]:
    why = _missing()
    if why:
        _unavailable(why)
    # Short path on purpose: the engines' unix sockets live in it (108-byte limit).
    state = tempfile.mkdtemp(prefix="ksw-", dir="/tmp")
    _standing.add(state)
    try:
        r = subprocess.run(
            [str(SCRIPT), "up", "3"],
            env=_script_env(state),
            capture_output=True,
            text=True,
            timeout=UP_TIMEOUT,
            start_new_session=True,
        )
        if r.returncode != 0:
            _unavailable(
                f"scripts/swarm-cluster.sh up failed ({r.returncode}):\n{r.stderr[-3000:]}"
            )
        yield cluster_from_exports(parse_exports(r.stdout))
    finally:
        take_down(state)


def _node_script(cluster: SwarmCluster, verb: str, node: SwarmNode) -> None:
    k = cluster.nodes.index(node) + 1
    r = subprocess.run([str(SCRIPT), verb, str(k)], env=_script_env(cluster.state_dir),
                       capture_output=True, text=True, timeout=UP_TIMEOUT,
                       start_new_session=True)
    if r.returncode != 0:
        raise AssertionError(f"swarm-cluster.sh {verb} {k} -> {r.returncode}: "
                             f"{r.stderr.strip()[-2000:]}")


@contextmanager
def engine_stopped(cluster: SwarmCluster, node: SwarmNode) -> Iterator[None]:
    """``node``'s engine stopped, the manager seeing the node Down, for the with-block; then
    started again with its data and Ready, whatever happened, for the session's other tests."""
    try:
        _node_script(cluster, "stop", node)
        yield
    finally:
        _node_script(cluster, "start", node)
