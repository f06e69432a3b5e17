"""The seam between kompose and what runs a stack's services: the :class:`Backend` protocol,
and the values it answers with. A protocol module imports no implementation: which backend
a stack gets is choose.py's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from kompose_py.backends.docker import Container
    from kompose_py.runner.command import Command, Outcome
    from kompose_py.runner.run import Runner
    from kompose_py.stacks import Stack

HEALTH_STATES = ("healthy", "unhealthy", "starting")


@dataclass(frozen=True)
class ServiceState:
    service: str
    container: str
    state: str  # Compose's: running, exited, paused, restarting, created, dead
    health: str  # "" without a health check, else healthy / unhealthy / starting
    ports: tuple[str, ...]


@dataclass(frozen=True)
class ServiceDetail:
    """One service as an orchestrator that schedules replicas reports it (Swarm)."""

    service: str
    running: int
    desired: int
    nodes: tuple[str, ...]
    update: str  # "" or the service's update state (updating, completed, rollback_completed…)


@dataclass(frozen=True)
class StackStatus:
    stack: str
    engine: str | None  # "DOCKER_HOST=…" when the stack's engine is not kompose's own
    expected: tuple[str, ...]
    containers: tuple[ServiceState, ...] = ()
    database: str | None = None
    newest_dump: Path | None = None
    dump_age_seconds: float | None = None
    error: str | None = None
    health: dict[str, int] = field(default_factory=dict)
    orchestrator: str = "compose"
    services: tuple[ServiceDetail, ...] = ()  # replicas, nodes, update state (Swarm)

    @property
    def running(self) -> tuple[str, ...]:
        """Expected services with at least one running container."""
        up = {c.service for c in self.containers if c.state == "running"}
        return tuple(s for s in self.expected if s in up)

    @property
    def ports(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for c in self.containers:
            for port in c.ports:
                seen[port] = None
        return tuple(seen)

    @property
    def ok(self) -> bool:
        """Every expected service runs and none is unhealthy."""
        return (self.error is None and len(self.running) == len(self.expected)
                and not self.health.get("unhealthy"))



class Steps(Protocol):
    """What a backend needs of the stack run that performs a command (lifecycle's StackRun,
    through stackcmd.py): each process is shown and recorded as a step of the stack."""

    env: dict[str, str]

    @property
    def dry_run(self) -> bool: ...

    @property
    def queries(self) -> Runner:
        """Runs read-only questions, in dry-runs too."""
        ...

    def run_command(self, name: str, cmd: Command) -> Outcome: ...

    def note(self, text: str) -> None:
        """A line for the stack's output (dry-run, --verbose and warnings)."""
        ...

    def detail(self, text: str) -> None:
        """A line shown in dry-runs and with --verbose only."""
        ...

    def warn(self, text: str) -> None:
        """A line the user must see although nothing failed (also the report's warnings)."""
        ...

    def fail(self, message: str) -> None:
        """The main step failed for a reason that is not a process exit."""
        ...

    def step(self, name: str, duration: float, error: str | None = None) -> None:
        """Record a step that is no process (a wait): succeeded, or failed with ``error``."""
        ...

    def cancelled(self) -> bool:
        """Ctrl-C, SIGTERM or SIGHUP arrived: stop waiting."""
        ...


class Backend(Protocol):
    """How one kind of orchestrator runs a stack's services."""

    name: str  # "compose"
    # The subcommands this backend knows without asking its program, and those that never
    # talk to the engine.
    verbs: frozenset[str]
    offline: frozenset[str]

    def program(self, env: Mapping[str, str]) -> list[str]:
        """The program line (``docker compose``) for this environment."""
        ...

    def files(self, stack: Stack, env: Mapping[str, str]) -> list[Path]:
        """The definition files the program reads in the stack folder."""
        ...

    def project(self, stack: Stack, env: Mapping[str, str]) -> str:
        """The stack's name as the orchestrator knows it (Compose's project name)."""
        ...

    def command(self, stack: Stack, env: Mapping[str, str], args: Sequence[str],
                interactive: bool) -> Command:
        """The process that runs ``args`` (``up -d``) for the stack; ``interactive``: one
        stack at a time on a terminal, so a verb that talks to the user keeps it."""
        ...

    def perform(self, steps: Steps, stack: Stack, args: Sequence[str],
                interactive: bool) -> None:
        """Run ``args`` for the stack as the main step between its hooks: one process
        (``command``) or several (Swarm's deploy, then its wait)."""
        ...

    def refusal(self, verb: str, args: Sequence[str] = ()) -> str | None:
        """Why this backend does not run ``verb`` (with ``args``, the arguments after it)
        and what to use instead, naming the argument at fault (None: it does). Asked before
        the first stack starts, so nothing half-done: no hook runs."""
        ...

    def refused(self, stack: Stack, env: Mapping[str, str], verb: str,
                runner: Runner) -> list[str]:
        """What in the stack's definition this backend will not run for ``verb``, one line
        each (checked before the first stack starts)."""
        ...

    def findings(self, stack: Stack, env: Mapping[str, str],
                 runner: Runner) -> tuple[list[str], list[str]]:
        """For env:check: what in the stack's definition this backend refuses (errors) and
        what it drops or rewrites (warnings), one line each."""
        ...

    def subcommands(self, env: Mapping[str, str], runner: Runner) -> frozenset[str] | None:
        """Every subcommand the installed program accepts (None: cannot tell)."""
        ...

    def owns(self, container: Container, stack: Stack, env: Mapping[str, str]) -> bool:
        """Whether a running container belongs to the stack."""
        ...

    def service_of(self, container: Container) -> str:
        """The service a container runs ("" when it is no service of this backend)."""
        ...

    def networks(self, stack: Stack, env: Mapping[str, str], runner: Runner,
                 cached: bool = False) -> set[str] | str:
        """The networks the stack's services join, or why that cannot be said."""
        ...

    def status(self, stack: Stack, env: Mapping[str, str], runner: Runner) -> StackStatus:
        """Services expected and running (no database, dump or engine fields: status.py adds
        those)."""
        ...
