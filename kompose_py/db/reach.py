"""How kompose reaches a stack's PostgreSQL: the host's tools, or the database's container.

One small protocol, :class:`Access`, with three implementations:

- :class:`HostAccess`: pg_dump/psql on the host, administrative SQL through psycopg;
- :class:`~kompose_py.db.swarmreach.NetworkAccess` (swarmreach.py): a database that is a
  service of a swarm stack, its task on any node: a one-off client container on the manager,
  on the stack's network;
- :class:`ContainerAccess`: pg_dump/psql inside the database's container with ``docker exec``
  on the stack's engine (``DOCKER_HOST``/``DOCKER_CONTEXT`` from the stack's environment
  apply, ``ssh://`` engines included); the dump streams out to the host file and an import
  streams in on stdin; administrative SQL runs through psql there, rendered by psycopg.sql.

The password never appears in any argv: on the host it is PGPASSWORD in the tool's
environment; for a container it is ``docker exec -e PGPASSWORD`` (a name, no value), which
makes docker pass the value from its own environment into the exec'd process.

:func:`resolve` decides which one a stack uses (``DB_ACCESS``, ``DB_CONTAINER``, else the
container that answers to ``DB_HOST`` as the stack's own containers would resolve it, else the
container publishing ``DB_PORT`` for a local ``DB_HOST``, else the host). Which containers
are the stack's and which networks it joins, the stack's backend says (backends/). The safety
logic (partial files, checked dumps, the scratch-database swap, the lock) is in db/, once,
above this protocol.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from kompose_py.backends.base import Backend
from kompose_py.backends.choose import backend_for
from kompose_py.backends.docker import Container, engine_label, running_containers
from kompose_py.db.postgres.catalog import Admin
from kompose_py.db.postgres.tools import (
    CONNECT_TIMEOUT,
    client_flags,
    db_argument,
    pg_options,
    with_password,
)
from kompose_py.db.settings import DbSettings, settings_from
from kompose_py.db.swarmreach import NetworkAccess, service_access
from kompose_py.envfiles import StackEnv
from kompose_py.errors import StepError
from kompose_py.lifecycle import RunContext, StackRun
from kompose_py.runner.command import Command, RemoteStop
from kompose_py.runner.run import Runner
from kompose_py.stacks import Stack

# Set in the environment of what kompose starts in a container (a fresh value per call).
EXEC_MARK = "KOMPOSE_EXEC_MARK"


# $1: KOMPOSE_EXEC_MARK=<value>. Fails (exit 127) when it cannot look; prints how many it ended.
_STOP_SCRIPT = (
    'command -v cat >/dev/null 2>&1 || { echo "no cat in the container" >&2; exit 127; }; n=0; '
    'for d in /proc/[0-9]*; do case "$(cat "$d/environ" 2>/dev/null)" in '
    '*"$1"*) kill -TERM "${d#/proc/}" 2>/dev/null && n=$((n + 1));; esac; done; echo "$n"')


LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


class Access(Protocol):
    mode: str  # "host" | "container"
    db: DbSettings

    def describe(self) -> str: ...

    def tool(self, program: str, database: str, extra: Sequence[str], env: Mapping[str, str],
             cwd: Path, *, stdin: bool = False, tty: bool = False) -> Command: ...

    def admin(self, runner: Runner, env: Mapping[str, str], cwd: Path,
              report: Callable[[str], None]) -> Admin: ...


@dataclass(frozen=True)
class HostAccess:
    db: DbSettings
    why: str = ""
    mode: str = "host"

    def describe(self) -> str:
        return f"host tools, {self.db.host}:{self.db.port}" + (f" ({self.why})" if self.why
                                                                else "")

    def env(self, env: Mapping[str, str]) -> dict[str, str]:
        out = with_password(env, self.db)
        out.setdefault("PGCONNECT_TIMEOUT", CONNECT_TIMEOUT)
        return out

    def tool(self, program: str, database: str, extra: Sequence[str], env: Mapping[str, str],
             cwd: Path, *, stdin: bool = False, tty: bool = False) -> Command:
        argv = (program, *pg_options(self.db, self.db.host, self.db.port), *extra,
                "-d", db_argument(database))
        return Command(argv, cwd, self.env(env))

    def admin(self, runner: Runner, env: Mapping[str, str], cwd: Path,
              report: Callable[[str], None]) -> Admin:
        from kompose_py.db.postgres.admin import PsycopgAdmin

        return PsycopgAdmin(self.db, report)


@dataclass(frozen=True)
class ContainerAccess:
    db: DbSettings
    container: str
    port: str  # the server's port inside the container
    engine: str  # how the engine was chosen, for messages
    why: str = ""
    mode: str = "container"

    def describe(self) -> str:
        where = f"container {self.container}" + (f" on {self.engine}" if self.engine else "")
        return where + (f" ({self.why})" if self.why else "")

    def env(self, env: Mapping[str, str]) -> dict[str, str]:
        return with_password(env, self.db)

    def tool(self, program: str, database: str, extra: Sequence[str], env: Mapping[str, str],
             cwd: Path, *, stdin: bool = False, tty: bool = False) -> Command:
        flags = client_flags(self.db, stdin, tty, env)
        # TCP to the server inside the container, so that DB_USER/DB_PASSWORD are checked
        # as they are for the stack's own clients (local socket connections are often
        # "trust" in database images).
        # Marks the process in the container (by name, like the password): a signal that
        # stops kompose reaches the local docker client only, so the process is then ended
        # from inside.
        flags += ["-e", EXEC_MARK]
        argv = ("docker", "exec", *flags, self.container, program,
                *pg_options(self.db, "localhost", self.port), *extra,
                "-d", db_argument(database))
        mark = os.urandom(16).hex()
        env = {**self.env(env), EXEC_MARK: mark}
        return Command(argv, cwd, env, remote_stop=self._stop(program, mark, env, cwd))

    def _stop(self, program: str, mark: str, env: Mapping[str, str], cwd: Path) -> RemoteStop:
        """SIGTERM to the processes in the container whose environment holds the mark (POSIX
        sh and cat only: database images are often minimal). The docker client gets the
        stack's environment without its secrets and without the mark itself."""
        from kompose_py.masking import is_secret_key

        quiet = {k: v for k, v in env.items()
                 if k != EXEC_MARK and not is_secret_key(k)}
        return RemoteStop(Command(
            ("docker", "exec", self.container, "sh", "-c", _STOP_SCRIPT, "kompose-stop",
             f"{EXEC_MARK}={mark}"), cwd, quiet, timeout=30),
            f"{program} in container {self.container}")

    def admin(self, runner: Runner, env: Mapping[str, str], cwd: Path,
              report: Callable[[str], None]) -> Admin:
        from kompose_py.db.postgres.admin import ContainerAdmin

        return ContainerAdmin(self, runner, env, cwd, report)


AccessKind = HostAccess | ContainerAccess | NetworkAccess


def through(container: Container, db: DbSettings, engine: str, why: str) -> ContainerAccess:
    """Container access to ``container``; the server's port inside it is the container side of
    the mapping that publishes DB_PORT, else DB_PORT."""
    port = next((private for host_port, private in container.published if host_port == db.port),
                db.port)
    return ContainerAccess(db, container.name, port, engine, why)


def resolve(db: DbSettings, stack: Stack, values: Mapping[str, str], runner: Runner,
            cached: bool = False) -> AccessKind:
    """Where this stack's database is reached from; raises StepError when DB_ACCESS /
    DB_CONTAINER ask for something that is not there."""
    if db.access == "host":
        return HostAccess(db, "DB_ACCESS=host")
    engine = engine_label(values)
    containers = running_containers(runner, values, stack.path, cached)
    if isinstance(containers, str):
        if db.access == "container" or db.container:
            raise StepError(f"cannot list the containers of the Docker engine"
                            f"{' ' + engine if engine else ''}: {containers}")
        return HostAccess(db, f"Docker engine not reachable: {containers}")
    if db.container:
        match = [c for c in containers if db.container in (c.name, c.name.lstrip("/"))]
        if not match:
            raise StepError(f"DB_CONTAINER={db.container}: no running container of that name"
                            f"{' on ' + engine if engine else ''}",
                            hint="start it, or correct DB_CONTAINER")
        return through(match[0], db, engine, "DB_CONTAINER")
    backend = backend_for(values)
    answering = [c for c in containers
                 if any(db.host in names for names in _names(c, backend).values())]
    try:
        found = _answering(db, stack, values, containers, answering, runner, cached)
        unknown = ""
    except _Unknown as exc:
        found, unknown = [], str(exc)
    if len(found) > 1:
        names = ", ".join(sorted(c.name for c in found))
        raise StepError(f"DB_HOST={db.host} matches several running containers ({names})",
                        hint="set DB_CONTAINER to the database's container")
    if found:
        return through(found[0], db, engine, f"answers to DB_HOST={db.host}")
    if backend.name == "swarm" and db.host.lower() not in LOCAL_HOSTS:
        # A task on another node: a one-off client container on the stack's network.
        reached = service_access(db, backend.project(stack, values), values, stack.path,
                                 runner, engine)
        if isinstance(reached, str):
            raise StepError(reached)
        if reached is not None:
            return reached
    if db.host.lower() in LOCAL_HOSTS:
        publishing = publishers(db, containers)
        if len(publishing) == 1:
            return through(publishing[0], db, engine, f"publishes port {db.port}")
    elsewhere = ""
    if answering:
        # Not found on the stack's networks, though a container elsewhere has the name.
        names = ", ".join(sorted(c.name for c in answering))
        elsewhere = (f"{names} answers to DB_HOST={db.host}, but "
                     + (unknown if unknown else "on networks this stack does not join")
                     + "; set DB_CONTAINER if it is this stack's database")
    if db.access == "container":
        raise StepError(f"DB_ACCESS=container, but no running container answers to "
                        f"DB_HOST={db.host}" + (f" or publishes port {db.port}"
                                                if db.host.lower() in LOCAL_HOSTS else "")
                        + (" on this stack's networks" if answering else ""),
                        hint=elsewhere or "start the database's stack, or set DB_CONTAINER")
    return HostAccess(db, elsewhere)


def _answering(db: DbSettings, stack: Stack, values: Mapping[str, str],
               containers: Sequence[Container], answering: Sequence[Container],
               runner: Runner, cached: bool) -> list[Container]:
    """The containers that DB_HOST resolves to from the stack's own containers: by container
    name, Compose service name or network alias, on the stack's networks. While none of the
    stack's containers runs, its networks are those its compose files declare (Compose's own
    reading of them): a container of another project that happens to answer to the same
    name on a network this stack never joins is not this stack's database."""
    if not answering:
        return []
    backend = backend_for(values)
    own_networks = {net for c in containers if backend.owns(c, stack, values)
                    for net in c.networks}
    if not own_networks:
        declared = backend.networks(stack, values, runner, cached)
        if isinstance(declared, str):
            # Not knowing the stack's networks, no container is taken for its database.
            raise _Unknown(f"cannot read the stack's compose files (docker compose config: "
                           f"{declared})")
        own_networks = declared
    return [c for c in answering
            if any(db.host in names for net, names in _names(c, backend).items()
                   if net in own_networks)]


def _names(container: Container, backend: Backend) -> dict[str, frozenset[str]]:
    """Network -> the names the container answers to there; on a user-defined network that
    includes its service's name (older engines do not list it)."""
    service = backend.service_of(container)
    if not service:
        return container.networks
    return {net: names | {service} if container.name in names else names
            for net, names in container.networks.items()}


class _Unknown(Exception):
    """The stack's networks could not be learnt: why."""


def publishers(db: DbSettings, containers: Sequence[Container]) -> list[Container]:
    return [c for c in containers if any(host == db.port for host, _ in c.published)]




def access_for(ctx: RunContext, stack: Stack, values: dict[str, str]) -> AccessKind:
    """How this stack run reaches its database (asked through the run's query runner, which
    answers in dry-runs too: the plan names the container a real run would use)."""
    return resolve(settings_from(values), stack, values, ctx.queries, cached=ctx.cache_queries)


def describe_access(stack: Stack, env: StackEnv, runner: Runner) -> tuple[str, str]:
    """For --list: where the database is reached from, short and long (or why that cannot
    be said)."""
    try:
        access = resolve(settings_from(env.values), stack, env.values, runner, cached=True)
    except StepError as exc:
        return "?", f"unresolved: {exc.message}"
    short = "host" if isinstance(access, HostAccess) else \
        f"service:{access.container}" if isinstance(access, NetworkAccess) \
        else f"container:{access.container}"
    return short, access.describe()


_ADMIN_MODULE = "kompose_py.db.postgres.admin"


def warm_admin(ctx: RunContext) -> None:
    """Start importing the admin layer (psycopg: about 0.1 s of CPU) in a thread of its own,
    so that it overlaps what the main thread waits for first (the lock, hooks, docker ps).
    Errors are left to the real import, which says them."""
    import sys

    if ctx.dry_run or _ADMIN_MODULE in sys.modules:
        return
    import contextlib
    import importlib
    import threading

    def load() -> None:
        with contextlib.suppress(Exception):  # said by the import that needs it
            importlib.import_module(_ADMIN_MODULE)

    threading.Thread(target=load, name="warm-admin").start()


def open_admin(ctx: RunContext, access: AccessKind, run: StackRun) -> Admin:
    """The admin channel of this stack run: the plan's in a dry-run (it says which SQL would
    run and connects to nothing), else the access's own."""
    if ctx.dry_run:
        from kompose_py.db.postgres.admin import PlanAdmin

        return PlanAdmin(run.note)
    return access.admin(ctx.runner, run.env, run.stack.path, run.note)
