"""``kompose --status``: what really runs, per stack, asked of the engine for every stack at once.

Per stack two read-only Compose calls in the stack folder with the stack's environment, so
Compose chooses the files and profiles itself (COMPOSE_FILE, COMPOSE_PROFILES, override file):
``config --services`` (the services expected) and ``ps --all --format json`` (what exists).
Stacks are queried in parallel threads; each call is a process started by the runner.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kompose_py import composecli
from kompose_py.compose import compose_program
from kompose_py.dumps import complete_dumps
from kompose_py.envfiles import StackEnv, mask, secret_values
from kompose_py.runner import Command, Runner
from kompose_py.stacks import Stack

HEALTH_STATES = ("healthy", "unhealthy", "starting")
ENGINE_KEYS = ("DOCKER_HOST", "DOCKER_CONTEXT")


@dataclass(frozen=True)
class ServiceState:
    service: str
    container: str
    state: str  # Compose's: running, exited, paused, restarting, created, dead
    health: str  # "" without a health check, else healthy / unhealthy / starting
    ports: tuple[str, ...]


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


def engine_of(env: Mapping[str, str], default: Mapping[str, str]) -> str | None:
    """The stack's engine when it differs from the one kompose itself would use: a stack
    whose DOCKER_CONTEXT=default or DOCKER_HOST=unix:///var/run/docker.sock names the same
    engine as kompose's own shows none."""
    for key in ENGINE_KEYS:
        if env.get(key, "") != default.get(key, "") and env.get(key):
            mine, theirs = composecli.engine_of(default), composecli.engine_of(env)
            if mine is not None and theirs is not None and mine.host == theirs.host:
                return None
            return f"{key}={env[key]}"
    return None


def _ports(publishers: Any) -> tuple[str, ...]:
    found: dict[str, None] = {}
    for pub in publishers or ():
        if not isinstance(pub, dict) or not pub.get("PublishedPort"):
            continue
        url = pub.get("URL") or ""
        # 0.0.0.0 and :: are the same published port seen by IPv4 and IPv6: show it once.
        host = "" if url in ("", "0.0.0.0", "::") else f"{url}:"
        found[f"{host}{pub['PublishedPort']}->{pub.get('TargetPort')}/{pub.get('Protocol')}"] = None
    return tuple(found)


def parse_ps(text: str) -> list[ServiceState]:
    """``docker compose ps --format json``: one object per line (Compose >= 2.21) or one array
    (older Compose)."""
    text = text.strip()
    if not text:
        return []
    items: list[Any]
    if text.startswith("["):
        items = json.loads(text)
    else:
        items = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [ServiceState(str(i.get("Service", "")), str(i.get("Name", "")),
                         str(i.get("State", "")).lower(), str(i.get("Health", "")).lower(),
                         _ports(i.get("Publishers")))
            for i in items]


def _capture(runner: Runner, argv: Sequence[str], stack: Stack, env: Mapping[str, str],
             scratch: Path) -> tuple[str | None, str]:
    """(stdout, error): the output of one read-only call, or why it failed."""
    out = scratch / f"out-{time.monotonic_ns()}"
    outcome = runner.run(Command(tuple(argv), stack.path, env, stdin="null", stdout=out,
                                 capture_stderr=True, echo_stderr=False, timeout=60))
    text = out.read_text(errors="replace") if out.exists() else ""
    if outcome.ok:
        return text, ""
    return None, outcome.reason


def query(stack: Stack, env: StackEnv, runner: Runner, default_env: Mapping[str, str],
          database: str | None, now: float) -> StackStatus:
    values = env.values
    engine = engine_of(values, default_env)
    dump = age = None
    if database:
        dumps = complete_dumps(stack.path, database)
        if dumps:
            dump = dumps[-1].path
            age = max(0.0, now - dumps[-1].timestamp.timestamp())
    program = compose_program(values)
    with tempfile.TemporaryDirectory(prefix=".kompose-status-") as tmp:
        services, error = _capture(runner, [*program, "config", "--services"], stack, values,
                                   Path(tmp))
        ps_text, ps_error = _capture(runner, [*program, "ps", "--all", "--format", "json"],
                                     stack, values, Path(tmp)) if services is not None \
            else (None, "")
    base = StackStatus(stack.name, engine, (), database=database, newest_dump=dump,
                       dump_age_seconds=age)
    if services is None or ps_text is None:
        why = mask(error or ps_error, secret_values(values))
        return replace(base, error=why)
    expected = tuple(line.strip() for line in services.splitlines() if line.strip())
    try:
        containers = tuple(parse_ps(ps_text))
    except (ValueError, AttributeError) as exc:
        return replace(base, expected=expected,
                       error=f"cannot read docker compose ps output: {exc}")
    health = dict.fromkeys(HEALTH_STATES, 0)
    for c in containers:
        if c.health in health and c.service in expected:
            health[c.health] += 1
    return replace(base, expected=expected, containers=containers, health=health)


def query_all(stacks: Sequence[Stack], envs: Mapping[str, StackEnv],
              databases: Mapping[str, str | None], default_env: Mapping[str, str],
              workers: int = 8,
              runner_factory: Callable[[], Runner] = Runner) -> list[StackStatus]:
    """Every stack at once (up to ``workers`` threads); results keep stack order."""
    runner = runner_factory()
    now = time.time()
    if not stacks:
        return []
    with cf.ThreadPoolExecutor(max_workers=max(1, min(workers, len(stacks)))) as pool:
        futures = [pool.submit(query, s, envs[s.name], runner, default_env,
                               databases.get(s.name), now) for s in stacks]
        return [f.result() for f in futures]
