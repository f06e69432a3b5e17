"""How kompose reaches a stack's PostgreSQL: the host's tools, or the database's container.

One small protocol, :class:`Access`, with two implementations:

- :class:`HostAccess`: pg_dump/psql on the host, administrative SQL through psycopg;
- :class:`ContainerAccess`: pg_dump/psql inside the database's container with ``docker exec``
  on the stack's engine (``DOCKER_HOST``/``DOCKER_CONTEXT`` from the stack's environment
  apply, ``ssh://`` engines included); the dump streams out to the host file and an import
  streams in on stdin; administrative SQL runs through psql there, rendered by psycopg.sql.

The password never appears in any argv: on the host it is PGPASSWORD in the tool's
environment; for a container it is ``docker exec -e PGPASSWORD`` (a name, no value), which
makes docker pass the value from its own environment into the exec'd process.

:func:`resolve` decides which one a stack uses (``DB_ACCESS``, ``DB_CONTAINER``, else the
container that answers to ``DB_HOST`` as the stack's own containers would resolve it, else the
container publishing ``DB_PORT`` for a local ``DB_HOST``, else the host). The safety logic
(partial files, checked dumps, the scratch-database swap, the lock) is in database.py, once,
above this protocol.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from kompose_py.envfiles import StackEnv
from kompose_py.errors import StepError
from kompose_py.runner import Command, RemoteStop, Runner
from kompose_py.stacks import Stack

CONNECT_TIMEOUT = "10"
# Set in the environment of what kompose starts in a container (a fresh value per call).
EXEC_MARK = "KOMPOSE_EXEC_MARK"
# $1: KOMPOSE_EXEC_MARK=<value>. Fails (exit 127) when it cannot look; prints how many it ended.
_STOP_SCRIPT = (
    'command -v cat >/dev/null 2>&1 || { echo "no cat in the container" >&2; exit 127; }; n=0; '
    'for d in /proc/[0-9]*; do case "$(cat "$d/environ" 2>/dev/null)" in '
    '*"$1"*) kill -TERM "${d#/proc/}" 2>/dev/null && n=$((n + 1));; esac; done; echo "$n"')
ACCESS_MODES = ("auto", "host", "container")
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
_CONNINFO_SPECIAL = re.compile(r"=|^postgres(ql)?://")


@dataclass(frozen=True)
class DbSettings:
    name: str
    host: str
    port: str
    user: str
    password: str | None = field(repr=False)
    maintenance_db: str
    access: str = "auto"  # DB_ACCESS
    container: str = ""  # DB_CONTAINER

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port} as {self.user or '(default user)'}"


def is_database_stack(env: StackEnv) -> bool:
    """Only the stack's own .env or -e make a database stack (a DB_NAME in the root .env is a
    shared default, not a database of every stack)."""
    return "DB_NAME" in env.own_keys and bool(env.values.get("DB_NAME"))


def settings_from(values: Mapping[str, str]) -> DbSettings:
    """Connection settings from a stack's environment as it stands (after its pre hooks:
    a DB_PASSWORD a pre hook wrote to $KOMPOSE_ENV_FILE counts)."""
    v = values
    access = (v.get("DB_ACCESS") or "auto").strip().lower()
    if access not in ACCESS_MODES:
        raise StepError(f"DB_ACCESS={v.get('DB_ACCESS')!r}: not one of {', '.join(ACCESS_MODES)}")
    return DbSettings(v["DB_NAME"], v.get("DB_HOST") or "localhost", v.get("DB_PORT") or "5432",
                      v.get("DB_USER", ""), v.get("DB_PASSWORD"),
                      v.get("DB_ADMIN_DATABASE") or "postgres", access,
                      (v.get("DB_CONTAINER") or "").strip())


def settings_for(env: StackEnv) -> DbSettings | None:
    if not is_database_stack(env):
        return None
    return settings_from(env.values)


def pg_hook_env(values: Mapping[str, str]) -> dict[str, str]:
    """db hooks get libpq's variables, so `pg_dump "$DB_NAME"` in a hook reaches the same
    server as kompose does from the host, with no password on its command line."""
    env = {"PGHOST": values.get("DB_HOST") or "localhost",
           "PGPORT": values.get("DB_PORT") or "5432", "PGDATABASE": values.get("DB_NAME", "")}
    if values.get("DB_USER"):
        env["PGUSER"] = values["DB_USER"]
    if values.get("DB_PASSWORD"):
        env["PGPASSWORD"] = values["DB_PASSWORD"]
    return env


def db_argument(name: str) -> str:
    """-d for pg_dump/psql: a name containing '=' or a URI prefix would be read as a
    connection string, so such names are passed as a quoted ``dbname='...'`` instead."""
    if not _CONNINFO_SPECIAL.search(name):
        return name
    escaped = name.replace("\\", "\\\\").replace("'", "\\'")
    return f"dbname='{escaped}'"


# -- the protocol ----------------------------------------------------------------------------
class Admin(Protocol):
    """Administrative SQL on the maintenance database."""

    def query(self, statement: Any) -> list[dict[str, Any]]: ...

    def execute(self, statement: Any) -> None: ...

    def close(self) -> None: ...


class Access(Protocol):
    mode: str  # "host" | "container"
    db: DbSettings

    def describe(self) -> str: ...

    def tool(self, program: str, database: str, extra: Sequence[str], env: Mapping[str, str],
             cwd: Path, *, stdin: bool = False, tty: bool = False) -> Command: ...

    def admin(self, runner: Runner, env: Mapping[str, str], cwd: Path,
              report: Any) -> Admin: ...


def _pg_options(db: DbSettings, host: str, port: str) -> list[str]:
    args = ["--no-password", "-h", host, "-p", port]
    if db.user:
        args += ["-U", db.user]
    return args


@dataclass(frozen=True)
class HostAccess:
    db: DbSettings
    why: str = ""
    mode: str = "host"

    def describe(self) -> str:
        return f"host tools, {self.db.host}:{self.db.port}" + (f" ({self.why})" if self.why
                                                                else "")

    def env(self, env: Mapping[str, str]) -> dict[str, str]:
        out = dict(env)
        out.pop("PGPASSWORD", None)
        if self.db.password:
            out["PGPASSWORD"] = self.db.password  # never argv: /proc/<pid>/cmdline is public
        out.setdefault("PGCONNECT_TIMEOUT", CONNECT_TIMEOUT)
        return out

    def tool(self, program: str, database: str, extra: Sequence[str], env: Mapping[str, str],
             cwd: Path, *, stdin: bool = False, tty: bool = False) -> Command:
        argv = (program, *_pg_options(self.db, self.db.host, self.db.port), *extra,
                "-d", db_argument(database))
        return Command(argv, cwd, self.env(env))

    def admin(self, runner: Runner, env: Mapping[str, str], cwd: Path, report: Any) -> Admin:
        from kompose_py.pgadmin import PsycopgAdmin  # psycopg: only when SQL really runs

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
        out = dict(env)
        out.pop("PGPASSWORD", None)
        if self.db.password:
            out["PGPASSWORD"] = self.db.password  # docker's own environment, never argv
        return out

    def tool(self, program: str, database: str, extra: Sequence[str], env: Mapping[str, str],
             cwd: Path, *, stdin: bool = False, tty: bool = False) -> Command:
        flags = ["-i"] if stdin or tty else []
        if tty:
            flags.append("-t")
        if self.db.password:
            flags += ["-e", "PGPASSWORD"]  # the name only: docker takes the value from its env
        flags += ["-e", f"PGCONNECT_TIMEOUT={CONNECT_TIMEOUT}"]
        # TCP to the server inside the container, so that DB_USER/DB_PASSWORD are checked
        # as they are for the stack's own clients (local socket connections are often
        # "trust" in database images).
        # Marks the process in the container (by name, like the password): a signal that
        # stops kompose reaches the local docker client only, so the process is then ended
        # from inside.
        flags += ["-e", EXEC_MARK]
        argv = ("docker", "exec", *flags, self.container, program,
                *_pg_options(self.db, "localhost", self.port), *extra,
                "-d", db_argument(database))
        mark = os.urandom(16).hex()
        env = {**self.env(env), EXEC_MARK: mark}
        return Command(argv, cwd, env, remote_stop=self._stop(program, mark, env, cwd))

    def _stop(self, program: str, mark: str, env: Mapping[str, str], cwd: Path) -> RemoteStop:
        """SIGTERM to the processes in the container whose environment holds the mark (POSIX
        sh and cat only: database images are often minimal). The docker client gets the
        stack's environment without its secrets and without the mark itself."""
        from kompose_py.envfiles import is_secret_key

        quiet = {k: v for k, v in env.items()
                 if k != EXEC_MARK and not is_secret_key(k)}
        return RemoteStop(Command(
            ("docker", "exec", self.container, "sh", "-c", _STOP_SCRIPT, "kompose-stop",
             f"{EXEC_MARK}={mark}"), cwd, quiet, timeout=30),
            f"{program} in container {self.container}")

    def admin(self, runner: Runner, env: Mapping[str, str], cwd: Path, report: Any) -> Admin:
        from kompose_py.pgadmin import ContainerAdmin

        return ContainerAdmin(self, runner, env, cwd, report)


# -- which one -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Container:
    name: str
    project: str
    service: str
    # network name -> the names the container answers to there
    networks: dict[str, frozenset[str]]
    # (host port, container port) of published TCP ports
    published: tuple[tuple[str, str], ...]


_DEFAULT_NETWORKS = frozenset({"bridge", "host", "none"})


def parse_inspect(text: str) -> list[Container]:
    """Running containers from ``docker inspect`` output."""
    found = []
    for item in json.loads(text or "[]"):
        if not (item.get("State") or {}).get("Running"):
            continue
        name = str(item.get("Name") or "").lstrip("/")
        labels = (item.get("Config") or {}).get("Labels") or {}
        project = labels.get("com.docker.compose.project", "")
        service = labels.get("com.docker.compose.service", "")
        settings = item.get("NetworkSettings") or {}
        networks: dict[str, frozenset[str]] = {}
        for net, endpoint in (settings.get("Networks") or {}).items():
            names = set((endpoint or {}).get("Aliases") or ())
            names |= set((endpoint or {}).get("DNSNames") or ())
            if net not in _DEFAULT_NETWORKS:
                # A user-defined network resolves the container name and, for Compose, the
                # service name (older engines list them as aliases, newer as DNSNames).
                names.add(name)
                if service:
                    names.add(service)
            networks[net] = frozenset(names)
        published = []
        for key, bindings in (settings.get("Ports") or {}).items():
            private, _, proto = key.partition("/")
            if proto != "tcp" or not bindings:
                continue
            for binding in bindings:
                published.append((str(binding.get("HostPort", "")), private))
        found.append(Container(name, project, service, networks, tuple(published)))
    return found


def project_name(stack: Stack, values: Mapping[str, str]) -> str:
    """The Compose project name of a stack: COMPOSE_PROJECT_NAME, else the folder name as
    Compose normalises it."""
    given = values.get("COMPOSE_PROJECT_NAME")
    if given:
        return given
    return re.sub(r"[^a-z0-9_-]", "", stack.path.name.lower()).lstrip("_-")


def engine_label(values: Mapping[str, str]) -> str:
    if values.get("DOCKER_HOST"):
        return f"DOCKER_HOST={values['DOCKER_HOST']}"
    if values.get("DOCKER_CONTEXT"):
        return f"DOCKER_CONTEXT={values['DOCKER_CONTEXT']}"
    return ""


_cache_lock = threading.Lock()
_cache: dict[tuple[str, ...], list[Container] | str] = {}
_networks_cache: dict[tuple[str, ...], set[str] | str] = {}


def running_containers(runner: Runner, values: Mapping[str, str], cwd: Path,
                       cached: bool = False) -> list[Container] | str:
    """The running containers of the stack's engine, or why they cannot be listed. Two
    read-only docker calls per engine (``cached``: once per kompose run, for listings and
    dry-runs; a real run asks again, as a pre hook may just have started the database)."""
    key = (values.get("DOCKER_HOST", ""), values.get("DOCKER_CONTEXT", ""),
           values.get("DOCKER_CONFIG", ""))
    return _remembered(_cache, key, cached, lambda: _ask_engine(runner, values, cwd))


_T = TypeVar("_T")


def _remembered(cache: dict[tuple[str, ...], _T], key: tuple[str, ...], cached: bool,
                ask: Callable[[], _T]) -> _T:
    """``ask()``; with ``cached``, its answer is kept for the run under ``key``."""
    if not cached:
        return ask()
    with _cache_lock:
        if key in cache:
            return cache[key]
    answer = ask()
    with _cache_lock:
        cache[key] = answer
    return answer


def _ask_engine(runner: Runner, values: Mapping[str, str], cwd: Path) -> list[Container] | str:
    def call(*args: str) -> tuple[bytes, str]:
        outcome = runner.run(Command(("docker", *args), cwd, values, stdin="null",
                                     stdout="capture", capture_stderr=True, echo_stderr=False,
                                     timeout=60))
        if outcome.ok:
            return outcome.stdout, ""
        return b"", outcome.reason

    for _attempt in range(3):
        ids, error = call("ps", "-q", "--no-trunc")
        if error:
            return error
        if not ids.split():
            return []
        text, error = call("inspect", *ids.decode().split())
        # A container that went away between the two calls (other projects come and go on
        # the engine; over ssh:// the gap is most of a second) makes docker inspect fail as a
        # whole: ask again rather than call the engine unreachable.
        if not error or "No such object" not in error:
            break
    if error:
        return error
    try:
        return parse_inspect(text.decode(errors="replace"))
    except (ValueError, AttributeError, TypeError) as exc:
        return f"cannot read docker inspect output: {exc}"


def through(container: Container, db: DbSettings, engine: str, why: str) -> ContainerAccess:
    """Container access to ``container``; the server's port inside it is the container side of
    the mapping that publishes DB_PORT, else DB_PORT."""
    port = next((private for host_port, private in container.published if host_port == db.port),
                db.port)
    return ContainerAccess(db, container.name, port, engine, why)


def resolve(db: DbSettings, stack: Stack, values: Mapping[str, str], runner: Runner,
            cached: bool = False) -> HostAccess | ContainerAccess:
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
    answering = [c for c in containers
                 if any(db.host in names for names in c.networks.values())]
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
    project = project_name(stack, values)
    own_networks = {net for c in containers if c.project == project for net in c.networks}
    if not own_networks:
        declared = declared_networks(stack, values, runner, cached)
        if isinstance(declared, str):
            # Not knowing the stack's networks, no container is taken for its database.
            raise _Unknown(f"cannot read the stack's compose files (docker compose config: "
                           f"{declared})")
        own_networks = declared
    return [c for c in answering
            if any(db.host in names for net, names in c.networks.items() if net in own_networks)]


class _Unknown(Exception):
    """The stack's networks could not be learnt: why."""


def declared_networks(stack: Stack, values: Mapping[str, str], runner: Runner,
                      cached: bool = False) -> set[str] | str:
    """The names of the networks the stack's services join, in any profile, as ``docker
    compose config`` resolves them (``<project>_default``, an external network's own name);
    or why Compose could not say (``cached``: once per stack and kompose run, for listings
    and dry-runs)."""
    return _remembered(_networks_cache, (str(stack.path),), cached,
                       lambda: _ask_compose(stack, values, runner))


def _ask_compose(stack: Stack, values: Mapping[str, str], runner: Runner) -> set[str] | str:
    from kompose_py.compose import compose_program

    why = ""
    # Every profile (Compose >= 2.20 takes "*"), else the active ones only.
    for profiles in (("--profile", "*"), ()):
        outcome = runner.run(Command(
            (*compose_program(values), *profiles, "config", "--format", "json"), stack.path,
            values, stdin="null", stdout="capture", capture_stderr=True, echo_stderr=False,
            timeout=60))
        if outcome.ok:
            try:
                networks = json.loads(outcome.stdout.decode(errors="replace")).get("networks")
                return {str((spec or {}).get("name") or key)
                        for key, spec in (networks or {}).items()}
            except (ValueError, AttributeError) as exc:
                return f"cannot read its output: {exc}"
        why = outcome.reason
    return why


def publishers(db: DbSettings, containers: Sequence[Container]) -> list[Container]:
    return [c for c in containers if any(host == db.port for host, _ in c.published)]
