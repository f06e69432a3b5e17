"""The third way to reach a stack's PostgreSQL: a database that is a service of a swarm stack,
whose task may run on any node, reached from the manager alone.

``docker exec`` reaches only containers of the engine kompose talks to, and Swarm exposes no
other node's engine. So each pg_dump, pg_restore or psql runs in a one-off container on the
manager (``docker run --rm``), attached to the stack's network (kompose renders stack
networks ``attachable``), from the service's own image, connecting to the service by name.
The password passes as ``-e PGPASSWORD`` (a name: docker takes the value from its own
environment), never on a command line. Measured: 1.1-1.4 s per call on a 3-node cluster.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kompose_py.backends import swarmstate
from kompose_py.backends.swarmengine import NAMESPACE_LABEL, EngineError, ask, last_node, tasks
from kompose_py.db.postgres.tools import (
    client_flags,
    db_argument,
    pg_options,
    with_password,
)
from kompose_py.db.settings import DbSettings
from kompose_py.runner.command import Command, RemoteStop
from kompose_py.runner.run import Runner

if TYPE_CHECKING:
    from collections.abc import Callable

    from kompose_py.db.postgres.catalog import Admin

IMAGE_KEY = "KOMPOSE_SWARM_DB_IMAGE"
NAME_PREFIX = "kompose-db-"

# $1: the container's name. Exit 0 when docker could look, whether or not it was there.
_STOP_SCRIPT = ('ids=$(docker ps -aq --filter "name=^$1\\$") || exit 1; '
                '[ -z "$ids" ] || docker rm -f $ids >/dev/null; echo ok')


@dataclass(frozen=True)
class NetworkAccess:
    """A one-off client container on the stack's network (``container``: the service)."""

    db: DbSettings
    container: str  # the swarm service
    port: str  # the server's port on the network
    engine: str
    why: str
    network: str
    image: str
    server: str  # the name the server answers to on that network
    mode: str = "container"  # what runs pg_dump is a container, as for docker exec

    def env(self, env: Mapping[str, str]) -> dict[str, str]:
        return with_password(env, self.db)

    def admin(self, runner: Runner, env: Mapping[str, str], cwd: Path,
              report: Callable[[str], None]) -> Admin:
        from kompose_py.db.postgres.admin import ContainerAdmin

        return ContainerAdmin(self, runner, env, cwd, report)

    def describe(self) -> str:
        where = f"service {self.container} over network {self.network} (a one-off " \
                f"{self.image} container on the manager" + \
                (f" {self.engine}" if self.engine else "") + ")"
        return where + (f" ({self.why})" if self.why else "")

    def tool(self, program: str, database: str, extra: Sequence[str], env: Mapping[str, str],
             cwd: Path, *, stdin: bool = False, tty: bool = False) -> Command:
        name = NAME_PREFIX + os.urandom(8).hex()
        flags = client_flags(self.db, stdin, tty, env)
        argv = ("docker", "run", "--rm", *flags, "--name", name, "--network", self.network,
                "--log-driver", "none", self.image, program,
                *pg_options(self.db, self.server, self.port), *extra,
                "-d", db_argument(database))
        return Command(argv, cwd, self.env(env), remote_stop=self._remove(program, name, env,
                                                                          cwd))

    def _remove(self, program: str, name: str, env: Mapping[str, str],
                cwd: Path) -> RemoteStop:
        """A signal reaches the local docker client only: the container is removed."""
        from kompose_py.masking import is_secret_key

        quiet = {k: v for k, v in env.items() if not is_secret_key(k)}
        return RemoteStop(Command(("sh", "-c", _STOP_SCRIPT, "kompose-stop", name), cwd,
                                  quiet, timeout=30),
                          f"{program} in container {name}")


def _service(runner: Runner, env: Mapping[str, str], cwd: Path, project: str,
             host: str) -> dict[str, Any] | None:
    """The stack's service DB_HOST names (``db``, ``<stack>_db`` or ``tasks.db``)."""
    name = host.removeprefix("tasks.")
    ids = ask(runner, env, cwd, "service", "ls", "-q", "--filter",
              f"label={NAMESPACE_LABEL}={project}").split()
    if not ids:
        return None
    for service in json.loads(ask(runner, env, cwd, "service", "inspect", *ids) or "[]"):
        full = str((service.get("Spec") or {}).get("Name") or "")
        if name in (full, full.removeprefix(project + "_")):
            return dict(service)
    return None


def service_access(db: DbSettings, project: str, env: Mapping[str, str], cwd: Path,
                   runner: Runner, engine: str) -> NetworkAccess | str | None:
    """Access to the swarm service DB_HOST names in this stack; None when it names none,
    or why it cannot be reached (no attachable network)."""
    try:
        service = _service(runner, env, cwd, project, db.host)
        if service is None:
            return None
        spec = service.get("Spec") or {}
        template = spec.get("TaskTemplate") or {}
        image = env.get(IMAGE_KEY) or str((template.get("ContainerSpec") or {})
                                         .get("Image") or "")
        networks = []
        for attachment in template.get("Networks") or []:
            text = ask(runner, env, cwd, "network", "inspect", "--format",
                       "{{.Name}} {{.Attachable}}", str(attachment.get("Target")))
            name, _, attachable = text.strip().partition(" ")
            if attachable == "true":
                networks.append(name)
        found = tasks(runner, env, cwd, [str(service.get("ID"))])
    except (EngineError, ValueError) as exc:
        return f"cannot inspect the swarm service {db.host}: {exc}"
    full = str(spec.get("Name"))
    if not any(t.get("DesiredState") == "running" and (t.get("Status") or {}).get("State")
               == "running" for t in found):
        # Its node down or drained, or the task not started: a client container would only
        # wait for a name that resolves nowhere (a dozen seconds) and then say that.
        state = swarmstate.decide(service, found)
        why = last_node(runner, env, cwd, found) or \
            f" ({state.reason or f'{state.running}/{state.desired} running'})"
        return f"swarm service {full} has no running task{why}, so its database cannot be " \
               "reached"
    if not networks:
        return (f"swarm service {full} is on no attachable network, so no client container "
                "can reach it (kompose renders stack networks attachable: redeploy with "
                "`up`)")
    # DB_PORT may be the host-mode published port: the server listens on its target.
    port = next((str(p.get("TargetPort")) for p in (spec.get("EndpointSpec") or {})
                 .get("Ports") or [] if str(p.get("PublishedPort")) == db.port), db.port)
    short = full.removeprefix(project + "_")
    return NetworkAccess(db, full, port, engine, f"swarm service of DB_HOST={db.host}",
                         network=sorted(networks)[0], image=image.split("@", 1)[0],
                         server=short)
