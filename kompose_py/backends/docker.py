"""The Docker engine a stack talks to, whatever runs its stacks (Compose today, Swarm next):
which engine (``DOCKER_HOST``, ``DOCKER_CONTEXT``), whether it answers, and its running
containers as engine-neutral values. What a container's labels mean is the backend's business
(backends/compose.py); nothing here reads an orchestrator's labels."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from kompose_py.runner.command import Command
from kompose_py.runner.run import Runner

ENGINE_KEYS = ("DOCKER_HOST", "DOCKER_CONTEXT")

def _docker_config(env: Mapping[str, str]) -> Path:
    if env.get("DOCKER_CONFIG"):
        return Path(env["DOCKER_CONFIG"])
    return Path(env.get("HOME") or Path.home()) / ".docker"


# -- the engine ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Engine:
    """A Docker engine and how it was chosen."""

    host: str  # unix:///var/run/docker.sock, tcp://host:2375, ssh://user@host
    source: str  # how it was chosen: "DOCKER_HOST", "context NAME", "default"

    def __str__(self) -> str:
        return f"{self.host} ({self.source})"


DEFAULT_HOST = "unix:///var/run/docker.sock"


def engine_of(env: Mapping[str, str]) -> Engine | None:
    """The engine Docker would use with this environment; None when it cannot be told
    without asking docker (a context whose metadata is not where Docker keeps it)."""
    import json  # here: the common path (a dry-run of up, ps, …) never needs it

    if env.get("DOCKER_HOST"):
        return Engine(env["DOCKER_HOST"], "DOCKER_HOST")
    config = _docker_config(env)
    context = env.get("DOCKER_CONTEXT")
    if not context:
        try:
            context = json.loads((config / "config.json").read_text()).get("currentContext")
        except (OSError, ValueError, AttributeError):
            context = None
    if not context or context == "default":
        return Engine(DEFAULT_HOST, "default")
    import hashlib  # Docker keeps a context's metadata under the SHA-256 of its name

    meta = config / "contexts" / "meta" / hashlib.sha256(context.encode()).hexdigest()
    try:
        host = json.loads((meta / "meta.json").read_text())["Endpoints"]["docker"]["Host"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return Engine(str(host), f"context {context}")


def unreachable(engine: Engine, timeout: float = 3.0) -> str | None:
    """Why the engine cannot be reached, or None when it answers (or cannot be checked
    without a process: ssh://, npipe)."""
    import socket  # only here: most runs never get this far

    host = engine.host
    try:
        if host.startswith("unix://"):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(host.removeprefix("unix://"))
        elif host.startswith("tcp://"):
            address = host.removeprefix("tcp://").split("/", 1)[0]
            name, colon, port = address.rpartition(":")
            if not colon or name.endswith(":"):  # no port (an IPv6 address without one)
                name, port = address, "2375"
            with socket.create_connection((name.strip("[]") or "localhost", int(port)),
                                          timeout=timeout):
                pass
    except (OSError, ValueError) as exc:
        return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return None



def shown_engine(env: Mapping[str, str], default: Mapping[str, str]) -> str | None:
    """The stack's engine when it differs from the one kompose itself would use: a stack
    whose DOCKER_CONTEXT=default or DOCKER_HOST=unix:///var/run/docker.sock names the same
    engine as kompose's own shows none."""
    for key in ENGINE_KEYS:
        if env.get(key, "") != default.get(key, "") and env.get(key):
            mine, theirs = engine_of(default), engine_of(env)
            if mine is not None and theirs is not None and mine.host == theirs.host:
                return None
            return f"{key}={env[key]}"
    return None


@dataclass(frozen=True)
class Container:
    """A running container as the engine describes it."""

    name: str
    labels: dict[str, str]
    # network name -> the names the container answers to there (aliases, DNS names, and its
    # own name on a user-defined network)
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
        labels = {str(k): str(v) for k, v in
                  ((item.get("Config") or {}).get("Labels") or {}).items()}
        settings = item.get("NetworkSettings") or {}
        networks: dict[str, frozenset[str]] = {}
        for net, endpoint in (settings.get("Networks") or {}).items():
            names = set((endpoint or {}).get("Aliases") or ())
            names |= set((endpoint or {}).get("DNSNames") or ())
            if net not in _DEFAULT_NETWORKS:
                names.add(name)  # a user-defined network resolves the container's name
            networks[net] = frozenset(names)
        published = []
        for key, bindings in (settings.get("Ports") or {}).items():
            private, _, proto = key.partition("/")
            if proto != "tcp" or not bindings:
                continue
            for binding in bindings:
                published.append((str(binding.get("HostPort", "")), private))
        found.append(Container(name, labels, networks, tuple(published)))
    return found


def engine_label(values: Mapping[str, str]) -> str:
    if values.get("DOCKER_HOST"):
        return f"DOCKER_HOST={values['DOCKER_HOST']}"
    if values.get("DOCKER_CONTEXT"):
        return f"DOCKER_CONTEXT={values['DOCKER_CONTEXT']}"
    return ""


_cache_lock = threading.Lock()


_cache: dict[tuple[str, ...], list[Container] | str] = {}


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

