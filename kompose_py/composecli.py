"""What the installed Compose accepts and whether a stack's Docker engine answers: both are
asked before the first stack starts, so a typo or a stopped engine is one clear line instead
of one failure per stack.

The subcommand list comes from the Compose program itself (its ``--help``), so plugins and
commands newer than kompose work. It is cached per Compose version in the user's cache folder;
a cache entry is found by the identity of the program files (path, size, mtime, inode), so the
common path costs a few ``stat`` calls and no process.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from kompose_py.runner import Command, Runner

# Where the Docker CLI looks for its plugins (docker-compose is one), besides $DOCKER_CONFIG.
_PLUGIN_DIRS = ("/usr/local/lib/docker/cli-plugins", "/usr/local/libexec/docker/cli-plugins",
                "/usr/lib/docker/cli-plugins", "/usr/libexec/docker/cli-plugins")
CACHE_NAME = "compose-commands.json"
PROBE_TIMEOUT = 20.0


def _docker_config(env: Mapping[str, str]) -> Path:
    if env.get("DOCKER_CONFIG"):
        return Path(env["DOCKER_CONFIG"])
    return Path(env.get("HOME") or Path.home()) / ".docker"


def cache_file(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".cache")
    return Path(base) / "kompose" / CACHE_NAME


def _identity(path: str) -> list[object]:
    try:
        st = os.stat(path)
    except OSError:
        return [path]
    return [path, st.st_size, st.st_mtime_ns, st.st_ino]


def fingerprint(program: Sequence[str], env: Mapping[str, str]) -> str | None:
    """Which Compose this is, from file metadata alone (None: the program is not there)."""
    import json  # here: the common path (a dry-run of up, ps, …) never needs it

    exe = shutil.which(program[0], path=env.get("PATH"))
    if exe is None:
        return None
    parts: list[object] = [list(program), _identity(exe)]
    if Path(exe).name == "docker" and list(program[1:2]) == ["compose"]:
        for folder in (str(_docker_config(env) / "cli-plugins"), *_PLUGIN_DIRS):
            parts.append(_identity(os.path.join(folder, "docker-compose")))
    return json.dumps(parts)


def parse_help(text: str) -> frozenset[str]:
    """Command names from the ``Commands:`` sections of a Compose ``--help``."""
    names: set[str] = set()
    in_section = False
    for line in text.splitlines():
        if line.rstrip().endswith("Commands:"):
            in_section = True
        elif not line.strip():
            in_section = False
        elif in_section and line[:1].isspace():
            names.add(line.split()[0].rstrip(",*"))
    return frozenset(names)


def _read_cache(path: Path) -> dict[str, dict[str, object]]:
    import json  # here: the common path (a dry-run of up, ps, …) never needs it

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"fingerprints": {}, "versions": {}}
    if not isinstance(data, dict):
        return {"fingerprints": {}, "versions": {}}
    return {"fingerprints": dict(data.get("fingerprints") or {}),
            "versions": dict(data.get("versions") or {})}


def _write_cache(path: Path, data: dict[str, dict[str, object]]) -> None:
    """Best effort: an unwritable cache only costs the next run a probe."""
    import json  # here: the common path (a dry-run of up, ps, …) never needs it

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        import tempfile  # only when the cache is written: not on the common path

        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".compose-commands-")
        with os.fdopen(fd, "w") as out:
            json.dump(data, out)
        os.replace(tmp, path)
    except OSError:
        return


def _ask(program: Sequence[str], args: Sequence[str], env: Mapping[str, str]) -> str | None:
    """What the program prints on stdout, or None when it fails."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="kompose-probe-") as folder:
        out = Path(folder) / "out"
        outcome = Runner().run(Command((*program, *args), Path(folder), env, stdin="null",
                                       stdout=out, capture_stderr=True, echo_stderr=False,
                                       timeout=PROBE_TIMEOUT))
        if not outcome.ok:
            return None
        return out.read_text(errors="replace")


def subcommands(program: Sequence[str], env: Mapping[str, str]) -> frozenset[str] | None:
    """Every subcommand this Compose accepts, or None when it cannot tell (not installed,
    an unfamiliar help format): then nothing is refused up front."""
    key = fingerprint(program, env)
    if key is None:
        return None
    path = cache_file(env)
    cache = _read_cache(path)
    version = cache["fingerprints"].get(key)
    known = cache["versions"].get(version) if isinstance(version, str) else None
    if isinstance(known, list):
        return frozenset(known)
    answer = _ask(program, ("version", "--short"), env)
    if answer is None:
        return None
    version = f"{program[0]} {answer.strip()}"
    known = cache["versions"].get(version)
    if not isinstance(known, list):
        text = _ask(program, ("--help",), env)
        names = parse_help(text or "")
        if not names:
            return None
        known = sorted(names | {"help"})  # cobra's own help command
        cache["versions"][version] = known
    cache["fingerprints"][key] = version
    _write_cache(path, cache)
    return frozenset(known)


# -- the engine ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Engine:
    """A Docker engine and how it was chosen."""

    host: str  # unix:///var/run/docker.sock, tcp://host:2375, ssh://user@host
    source: str  # how it was chosen: "DOCKER_HOST", "context NAME", "default"

    def __str__(self) -> str:
        return f"{self.host} ({self.source})"


DEFAULT_HOST = "unix:///var/run/docker.sock"
# Subcommands that never talk to the engine.
OFFLINE = frozenset({"config", "version", "help", "convert"})


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
