"""Shared fixtures: hermetic environment, stack trees from dicts, the real CLI, shims, and
the real Docker engine / PostgreSQL server (a missing one fails under
KOMPOSE_REQUIRE_INTEGRATION=1, as in CI, and skips otherwise)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
# Read before the hermetic fixture clears KOMPOSE_* and PG*.
REQUIRE_INTEGRATION = os.environ.get("KOMPOSE_REQUIRE_INTEGRATION") == "1"
PG = {
    "host": os.environ.get("KOMPOSE_TEST_PGHOST", "127.0.0.1"),
    "port": os.environ.get("KOMPOSE_TEST_PGPORT", "5432"),
    "user": os.environ.get("KOMPOSE_TEST_PGUSER", "kompose_test"),
    "password": os.environ.get("KOMPOSE_TEST_PGPASSWORD", "kompose-test-pw"),
}
# PostgreSQL server images built by scripts/setup-env.sh (no registry needed): the host's
# major version, and one newer than the host's pg_dump.
PG_IMAGE = os.environ.get("KOMPOSE_TEST_PG_IMAGE", "kompose/postgres:15")
PG_IMAGE_NEWER = os.environ.get("KOMPOSE_TEST_PG_IMAGE_NEWER", "kompose/postgres:17")
# A real 3-node Docker Swarm (scripts/swarm-cluster.sh), built once per session when a test
# asks for it.
pytest_plugins = ["tests.swarmfixture"]


# Fixtures of a database in a container (on this engine, or on one over SSH).
_IN_CONTAINER = {"pg_container", "pg_container_newer", "pg17", "remote_root"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test on the Swarm cluster is marked ``swarm``, and every test of a database in a
    container (by its name or parameters) ``container``: scripts/test-pythons.sh leaves both
    to the main run. They drive the same docker subprocesses on every Python and take most of
    the suite's time; most container tests are twins of host-mode ones, which run everywhere."""
    for item in items:
        if "swarm_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.swarm)
        if "container" in item.name or _IN_CONTAINER & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.container)
_CLEARED = ("KOMPOSE_", "COMPOSE_", "DOCKER_", "PG", "DB_", "NETWORK_NAME", "NO_COLOR")


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """kompose's cache (the Compose subcommand list) for this test session only."""
    return tmp_path_factory.mktemp("xdg-cache")


@pytest.fixture(autouse=True)
def hermetic_env(monkeypatch: pytest.MonkeyPatch, session_cache: Path) -> None:
    for key in list(os.environ):
        if key.startswith(_CLEARED):
            monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_CACHE_HOME", str(session_cache))
    # Tests that end groups on purpose need not wait the real 5 s grace.
    monkeypatch.setenv("KOMPOSE_KILL_GRACE", "0.5")


def make_stacks(root: Path, tree: dict[str, Any]) -> Path:
    """Write a tree: {"web": {"compose.yaml": "...", "hooks.sh": "..."}, ".env": "..."}."""
    root.mkdir(parents=True, exist_ok=True)
    for name, content in tree.items():
        path = root / name
        if isinstance(content, dict):
            make_stacks(path, content)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


COMPOSE = "services:\n  app:\n    image: busybox:latest\n"
# A service that really runs on the engine (local image only, stops at once on SIGTERM).
SERVICE = """services:
  app:
    image: busybox:latest
    pull_policy: never
    init: true
    command: ["sh", "-c", "echo ready; while :; do sleep 3600; done"]
    environment:
      FROM_ENV: ${FROM_ENV:-unset}
"""


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def all(self) -> str:
        return self.out + self.err


def run_kompose(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
                input: str | None = None, timeout: float = 120) -> Result:
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "kompose_py", *args], cwd=cwd, env=full_env,
                          input=input, capture_output=True, text=True, timeout=timeout)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def run_on_terminal(*args: str, env: dict[str, str] | None = None,
                    timeout: float = 120) -> tuple[int, str]:
    """Run kompose with stdin, stdout and stderr on a pseudo-terminal; return its exit code
    and everything it showed there."""
    import pty

    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "kompose_py", *args], stdin=follower,
                            stdout=follower, stderr=follower, env={**os.environ, **(env or {})})
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the other side is closed
            break
        if not data:
            break
        chunks.append(data)
    code = proc.wait(timeout=timeout)
    os.close(leader)
    return code, b"".join(chunks).decode()


# What a recording docker answers when kompose asks which subcommands Compose has: nothing
# (kompose then refuses nothing up front), and the question is not logged as a call.
PROBE_GUARD_PY = """
import sys
if sys.argv[1:2] == ["compose"] and (sys.argv[-2:] == ["version", "--short"]
                                     or sys.argv[-1] == "--help"):
    sys.exit(1)
"""
PROBE_GUARD_SH = 'case "$*" in compose*" version --short"|compose*" --help") exit 1;; esac\n'

SHIM = r'''#!/usr/bin/env python3
''' + PROBE_GUARD_PY + r'''
import json, os, sys
entry = {"argv": sys.argv[1:], "cwd": os.getcwd(),
         "env": {k: v for k, v in os.environ.items()}}
with open(os.environ["KOMPOSE_SHIM_LOG"], "a") as log:
    log.write(json.dumps(entry) + "\n")
print("shim ran", " ".join(sys.argv[1:]))
sys.exit(int(os.environ.get("SHIM_EXIT", "0")))
'''


@dataclass
class Shim:
    """A recording ``docker`` (and pg_dump/psql) on PATH: every call is a JSON line."""

    bin: Path
    log: Path

    engine: str = ""  # a socket that accepts connections: kompose's engine check passes

    def env(self) -> dict[str, str]:
        return {"PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}",
                "KOMPOSE_SHIM_LOG": str(self.log), "DOCKER_HOST": f"unix://{self.engine}"}

    def calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]


@pytest.fixture
def shim(tmp_path: Path) -> Iterator[Shim]:
    import socket
    import tempfile

    bin_dir = tmp_path / "shim-bin"
    bin_dir.mkdir()
    for name in ("docker", "pg_dump", "psql"):
        path = bin_dir / name
        path.write_text(SHIM)
        path.chmod(0o755)
    # A stand-in engine socket (short path: AF_UNIX allows ~100 bytes), so that tests with
    # the recording docker need no real engine.
    folder = Path(tempfile.mkdtemp(prefix="kt-eng-"))
    with socket.socket(socket.AF_UNIX) as engine:
        engine.bind(str(folder / "s"))
        engine.listen(512)
        yield Shim(bin_dir, tmp_path / "shim.log", str(folder / "s"))
    shutil.rmtree(folder, ignore_errors=True)


def _missing(what: str) -> None:
    if REQUIRE_INTEGRATION:
        pytest.fail(f"{what} is required (KOMPOSE_REQUIRE_INTEGRATION=1) and missing")
    pytest.skip(f"{what} not available")


@pytest.fixture(scope="session")
def docker_engine() -> None:
    ok = shutil.which("docker") is not None and all(
        subprocess.run(cmd, capture_output=True).returncode == 0
        for cmd in (["docker", "info"], ["docker", "compose", "version"],
                    ["docker", "image", "inspect", "busybox:latest"]))
    if not ok:
        _missing("a Docker engine with Compose v2 and the busybox:latest image "
                 "(run scripts/setup-env.sh)")


@pytest.fixture
def project_name() -> Iterator[Callable[[str], str]]:
    """Unique compose project names; everything they created is removed afterwards."""
    made: list[str] = []

    def make(stack: str) -> str:
        name = f"kt-{stack}-{uuid.uuid4().hex[:8]}"
        made.append(name)
        return name

    yield make
    for name in made:
        subprocess.run(["docker", "compose", "-p", name, "down", "-v", "--remove-orphans",
                        "-t", "1"], capture_output=True)


def project_containers(project: str, *, running_only: bool = True) -> list[str]:
    cmd = ["docker", "ps", "--filter", f"label=com.docker.compose.project={project}",
           "--format", "{{.Names}}"]
    if not running_only:
        cmd.insert(2, "-a")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return sorted(out.split())


def dump_text(body: str = "SELECT 1;\n") -> str:
    """A file that ends as pg_dump ends a complete plain dump (a blank line, then the three
    trailer lines)."""
    return body.rstrip("\n") + "\n\n--\n-- PostgreSQL database dump complete\n--\n\n"


@dataclass
class Postgres:
    """The real server, a password role, and unique databases that are dropped afterwards."""

    host: str
    port: str
    user: str
    password: str
    created: list[str]

    def complete_dump(self, body: str = "SELECT 1;\n") -> str:
        return dump_text(body)

    def connect(self, dbname: str = "postgres") -> Any:
        import psycopg

        return psycopg.connect(host=self.host, port=self.port, user=self.user,
                               password=self.password, dbname=dbname, autocommit=True)

    @property
    def compose(self) -> str:
        """A stack's compose.yaml for a stack using this server."""
        return COMPOSE

    def env_text(self, db_name: str) -> str:
        """A stack .env pointing at this server."""
        return (f"DB_NAME={db_name}\nDB_HOST={self.host}\nDB_PORT={self.port}\n"
                f"DB_USER={self.user}\nDB_PASSWORD={self.password}\n")

    def new_name(self, stem: str = "kt") -> str:
        name = f"{stem}_{uuid.uuid4().hex[:8]}"
        self.created.append(name)
        return name

    def create(self, name: str, rows: int = 100) -> None:
        from psycopg import sql

        with self.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        with self.connect(name) as conn:
            conn.execute("CREATE TABLE items (id int PRIMARY KEY, label text NOT NULL)")
            conn.execute("INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, %s) g",
                         (rows,))

    def fill(self, name: str, up_to: int) -> None:
        """Wide rows up to id ``up_to``: enough data that pg_dump runs for a while."""
        with self.connect(name) as conn:
            conn.execute("INSERT INTO items SELECT g, repeat('x', 500) FROM "
                         "generate_series((SELECT max(id) + 1 FROM items), %s) g", (up_to,))

    def rows(self, name: str) -> list[tuple[Any, ...]]:
        with self.connect(name) as conn:
            return conn.execute("SELECT id, label FROM items ORDER BY id").fetchall()

    def databases(self) -> set[str]:
        with self.connect() as conn:
            return {r[0] for r in conn.execute("SELECT datname FROM pg_database")}


@pytest.fixture
def pg() -> Iterator[Postgres]:
    server = Postgres(PG["host"], PG["port"], PG["user"], PG["password"], [])
    try:
        server.databases()
    except Exception as exc:
        _missing(f"a PostgreSQL server with role {PG['user']} on {PG['host']}:{PG['port']} "
                 f"({type(exc).__name__}; run scripts/setup-env.sh)")
    yield server

    with server.connect() as conn:
        for name in server.databases():
            if any(name == c or name.startswith(c[:40] + "_kompose_") for c in server.created):
                drop_database(conn, name)


@dataclass
class ContainerPostgres(Postgres):
    """A PostgreSQL server in a container on a user-defined network, reached by the stacks
    as ``DB_HOST=<alias>`` (container mode); the tests check its data from the host through
    the published port."""

    alias: str = ""
    container: str = ""
    network: str = ""

    @property
    def compose(self) -> str:
        """The stack joins the server's network, as a user's stacks do: DB_HOST resolves there,
        also while the stack's own containers are down."""
        return (COMPOSE + "    networks: [db]\n"
                f"networks:\n  db:\n    name: {self.network}\n    external: true\n")

    def env_text(self, db_name: str) -> str:
        return (f"DB_NAME={db_name}\nDB_HOST={self.alias}\nDB_PORT=5432\n"
                f"DB_USER={self.user}\nDB_PASSWORD={self.password}\n")


def start_pg_container(image: str, tag: str, publish: str = "127.0.0.1::5432"
                       ) -> ContainerPostgres:
    """docker run the image on a network of its own; wait until it accepts the password."""
    import time

    network, name, alias = f"kt-net-{tag}", f"kt-pg-{tag}", f"pg-{tag}"
    password = f"ct-pw-{tag}-Secret"
    subprocess.run(["docker", "network", "create", network], check=True, capture_output=True)
    subprocess.run(["docker", "run", "-d", "--name", name, "--network", network,
                    "--network-alias", alias, "-e", "POSTGRES_USER=kompose_ct",
                    "-e", "POSTGRES_PASSWORD", "-p", publish, image],
                   check=True, capture_output=True,
                   env={**os.environ, "POSTGRES_PASSWORD": password})
    mapping = subprocess.run(["docker", "port", name, "5432/tcp"], check=True,
                             capture_output=True, text=True).stdout.split()[0]
    host, _, port = mapping.rpartition(":")
    server = ContainerPostgres("127.0.0.1" if host in ("0.0.0.0", "[::]") else host, port,
                               "kompose_ct", password, [], alias=alias, container=name,
                               network=network)
    deadline = time.monotonic() + 90
    while True:
        try:
            server.databases()
            return server
        except Exception:
            if time.monotonic() > deadline:
                logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True)
                stop_pg_container(server)
                raise RuntimeError(f"{image} did not start: {logs.stderr[-500:]}") from None
            time.sleep(0.3)


def stop_pg_container(server: ContainerPostgres) -> None:
    subprocess.run(["docker", "rm", "-f", "-v", server.container], capture_output=True)
    subprocess.run(["docker", "network", "rm", server.network], capture_output=True)


def _image_there(image: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", image],
                          capture_output=True).returncode == 0


def end_process(proc: subprocess.Popen[Any], grace: float) -> None:
    """SIGTERM, ``grace`` seconds, then SIGKILL: a daemon a fixture started (dockerd, sshd)."""
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _session_container(image: str) -> Iterator[ContainerPostgres]:
    if not _image_there(image):
        _missing(f"the PostgreSQL image {image} (run scripts/setup-env.sh)")
    server = start_pg_container(image, uuid.uuid4().hex[:6])
    yield server
    stop_pg_container(server)


@pytest.fixture(scope="session")
def pg_container(docker_engine: None) -> Iterator[ContainerPostgres]:
    """One containerised server for the test session."""
    yield from _session_container(PG_IMAGE)


@pytest.fixture(scope="session")
def pg_container_newer(docker_engine: None) -> Iterator[ContainerPostgres]:
    """One containerised server newer than the host's tools (17: lz4/zstd) for the session."""
    yield from _session_container(PG_IMAGE_NEWER)


@pytest.fixture(params=["host", "container"])
def server(request: pytest.FixtureRequest) -> Iterator[Postgres]:
    """The same test against the host's server (host tools) and a server in a container
    (docker exec), as a user keeps them either way."""
    if request.param == "host":
        yield request.getfixturevalue("pg")
        return
    base = request.getfixturevalue("pg_container")
    server = replace(base, created=[])
    yield server
    with server.connect() as conn:
        for name in server.databases():
            if any(name == c or name.startswith(c[:40] + "_kompose_") for c in server.created):
                drop_database(conn, name)


def drop_database(conn: Any, name: str) -> None:
    """Plain DROP, retried: WITH (FORCE) fails for a non-superuser while autovacuum runs."""
    import time

    from psycopg import sql

    for attempt in range(50):
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s"
                     " AND pid <> pg_backend_pid() AND backend_type = 'client backend'", (name,))
        try:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
            return
        except Exception:
            if attempt == 49:
                raise
            time.sleep(0.1)


def _free_subnet() -> str:
    """A /24 under 10.254.0.0/16 that no interface on this machine uses yet."""
    used = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True,
                          text=True).stdout
    for n in [*range(uuid.uuid4().int % 200 + 20, 250), *range(20, 250)]:
        if f" 10.254.{n}." not in used:
            return f"10.254.{n}"
    raise RuntimeError("no free 10.254.N.0/24 for the second engine's bridge")


@pytest.fixture(scope="session")
def second_engine(docker_engine: None) -> Iterator[str]:
    """A second, independent Docker engine on this machine (a stand-in for another host),
    started for this test session alone: its own socket, data and exec roots, pidfile and
    bridge, so that test sessions running side by side never share or stop each other's."""
    if os.geteuid() != 0 or shutil.which("dockerd") is None or shutil.which("ip") is None:
        _missing("a second Docker engine (needs root, dockerd and ip)")
    tag = uuid.uuid4().hex[:6]
    host = f"unix:///run/kompose-test-b-{tag}.sock"
    data_root, exec_root = Path(f"/var/lib/kompose-test-b-{tag}"), Path(f"/run/ktb-{tag}")
    bridge = f"ktb-{tag}"
    env = {**os.environ, "DOCKER_HOST": host}
    log_path = f"/tmp/kompose-test-b-{tag}.log"
    log = open(log_path, "ab")  # noqa: SIM115 - lives as long as the engine
    # A bridge of its own: a daemon started with its default bridge disabled deletes
    # the host's docker0, which breaks `docker run` and every Dockerfile RUN step on the first
    # engine.
    subnet = _free_subnet()
    for cmd in (["ip", "link", "add", bridge, "type", "bridge"],
                ["ip", "addr", "add", f"{subnet}.1/24", "dev", bridge],
                ["ip", "link", "set", bridge, "up"]):
        subprocess.run(cmd, check=True, capture_output=True)
    started = subprocess.Popen(
        ["dockerd", "--host", host, "--data-root", str(data_root), "--exec-root", str(exec_root),
         "--pidfile", f"/run/ktb-{tag}.pid", f"--bridge={bridge}", "--iptables=false"],
        stdout=log, stderr=log, start_new_session=True)
    try:
        import time

        deadline = time.monotonic() + 60
        while subprocess.run(["docker", "info"], env=env, capture_output=True).returncode != 0:
            if time.monotonic() > deadline or started.poll() is not None:
                _missing(f"a second Docker engine (dockerd did not start; see {log_path})")
            time.sleep(0.3)
        import tempfile

        with tempfile.TemporaryDirectory() as ctx:
            shutil.copy(shutil.which("busybox") or "/bin/busybox", Path(ctx) / "busybox")
            (Path(ctx) / "Dockerfile").write_text(
                'FROM scratch\nCOPY busybox /bin/busybox\n'
                'RUN ["/bin/busybox","--install","-s","/bin"]\nCMD ["/bin/sh"]\n')
            subprocess.run(["docker", "build", "-q", "-t", "busybox:latest", ctx], env=env,
                           check=True, capture_output=True)
        yield host
    finally:
        end_process(started, grace=30)
        log.close()
        subprocess.run(["ip", "link", "delete", bridge], capture_output=True)
        for folder in (data_root, exec_root):
            shutil.rmtree(folder, ignore_errors=True)


@dataclass(frozen=True)
class SshEngine:
    """This machine's Docker engine behind an sshd of the test session's own:
    ``DOCKER_HOST=ssh://kt-ssh`` works for a process whose PATH starts with ``bin``, where a
    wrapper ``ssh`` adds ``-F <config>``. Each call of the wrapper is a line in ``calls``."""

    host: str
    bin: Path
    config: Path
    calls: Path

    def __iter__(self) -> Iterator[Any]:  # host, bin = ssh_engine
        return iter((self.host, self.bin))

    def env(self, **more: str) -> dict[str, str]:
        return {"PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}", **more}


@pytest.fixture(scope="session")
def ssh_engine(docker_engine: None, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[SshEngine]:
    """An sshd on 127.0.0.1 (a free port, key-only login for the current user, host key,
    authorized_keys and PidFile of its own) in front of this machine's engine, as a stand-in
    for a remote Docker host. Nothing in ~/.ssh is read or changed: the client gets its
    config, key and known_hosts through a wrapper ``ssh`` that comes first on PATH."""
    import pwd
    import socket
    import time

    # sshd re-executes itself, so it needs its absolute path
    sshd = next((p for p in ("/usr/sbin/sshd", shutil.which("sshd"))
                 if p and os.access(p, os.X_OK)), None)
    ssh, keygen = shutil.which("ssh"), shutil.which("ssh-keygen")
    if sshd is None or ssh is None or keygen is None:
        _missing("sshd, ssh and ssh-keygen for ssh:// engines (apt-get install openssh-server "
                 "openssh-client; scripts/setup-env.sh does it)")
    assert sshd and ssh and keygen
    user = pwd.getpwuid(os.getuid()).pw_name
    home = tmp_path_factory.mktemp("ssh-engine")
    for key in ("host_key", "client_key"):
        subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", f"kompose-test-{key}",
                        "-f", str(home / key)], check=True, capture_output=True)
    authorized = home / "authorized_keys"
    shutil.copy(home / "client_key.pub", authorized)
    authorized.chmod(0o600)
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    log = home / "sshd.log"
    started: subprocess.Popen[bytes] | None = None
    for _attempt in range(5):  # a free port may be taken between asking and binding
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        (home / "sshd_config").write_text(
            f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {home / 'host_key'}\n"
            f"PidFile {home / 'sshd.pid'}\nAuthorizedKeysFile {authorized}\n"
            f"AllowUsers {user}\nPermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "UsePAM no\nStrictModes no\nLogLevel VERBOSE\n"
            # the docker CLI opens one ssh connection per API connection
            "MaxStartups 100\nMaxSessions 100\n")
        # -D: stays in the foreground as our child, -e: its log to our file
        with open(log, "ab") as out:
            started = subprocess.Popen([sshd, "-D", "-e", "-f", str(home / "sshd_config")],
                                       stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while started.poll() is None and time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        if started.poll() is None:
            break
    if started is None or started.poll() is not None:
        raise RuntimeError(f"sshd did not start: {log.read_text()[-800:]}")
    config = home / "ssh_config"
    try:
        host_key = (home / "host_key.pub").read_text().split()
        (home / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
        config.write_text(
            f"Host kt-ssh\n    HostName 127.0.0.1\n    Port {port}\n    User {user}\n"
            f"    IdentityFile {home / 'client_key'}\n    IdentitiesOnly yes\n"
            f"    UserKnownHostsFile {home / 'known_hosts'}\n    GlobalKnownHostsFile /dev/null\n"
            "    StrictHostKeyChecking yes\n    BatchMode yes\n    LogLevel ERROR\n"
            # One connection for every docker call, as README advises for ssh:// engines:
            # without it each API call of the docker CLI is a new ssh handshake.
            f"    ControlMaster auto\n    ControlPath {home / 'cm-%C'}\n"
            "    ControlPersist 60\n")
        bin_dir = home / "bin"
        bin_dir.mkdir()
        calls = home / "ssh-calls.log"
        wrapper = bin_dir / "ssh"
        wrapper.write_text(f'#!/bin/sh\necho "$*" >>"{calls}"\nexec {ssh} -F "{config}" "$@"\n')
        wrapper.chmod(0o755)
        engine = SshEngine("ssh://kt-ssh", bin_dir, config, calls)
        check = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                               env={**os.environ, **engine.env(DOCKER_HOST=engine.host)},
                               capture_output=True, text=True, timeout=60)
        if check.returncode != 0:
            raise RuntimeError(f"docker over {engine.host} does not answer: "
                               f"{check.stderr.strip()[-500:]}; sshd: {log.read_text()[-500:]}")
        yield engine
    finally:
        subprocess.run([ssh, "-F", str(config), "-O", "exit", "kt-ssh"], capture_output=True,
                       timeout=30, check=False)  # the shared connection, before its sshd
        end_process(started, grace=10)
