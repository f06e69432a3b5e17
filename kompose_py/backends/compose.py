"""Docker Compose, the first backend: which files Compose reads in a stack folder, the
project name, the program (``docker compose`` or ``KOMPOSE_COMPOSE_CMD``), the subcommands it
accepts, the labels it puts on containers, the networks a stack declares and ``ps`` for
``--status``.

The subcommand list comes from the Compose program itself (its ``--help``), so plugins and
commands newer than kompose work. It is cached per Compose version in the user's cache folder;
a cache entry is found by the identity of the program files (path, size, mtime, inode), so the
common path costs a few ``stat`` calls and no process.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kompose_py.runner.command import Command
from kompose_py.stacks import OVERRIDE_FILE_NAMES, Stack

if TYPE_CHECKING:  # a plain `up` or `ps` needs none of them: they load when used
    from kompose_py.backends.base import ServiceState, StackStatus, Steps
    from kompose_py.backends.docker import Container
    from kompose_py.runner.run import Runner

# Docker Compose v2 subcommands.
COMPOSE_COMMANDS = frozenset({
    "attach", "build", "commit", "config", "cp", "create", "down", "events", "exec", "export",
    "images", "kill", "logs", "ls", "pause", "port", "ps", "publish", "pull", "push", "restart",
    "rm", "run", "scale", "start", "stats", "stop", "top", "unpause", "up", "version", "volumes",
    "wait", "watch"})
# Subcommands that never talk to the engine.
OFFLINE = frozenset({"config", "version", "help", "convert"})
# Subcommands that talk to the user; they keep the terminal when stacks run one at a time.
INTERACTIVE = frozenset({"exec", "run", "logs", "attach", "up", "watch"})
# `up` options that take a value (Compose v2): the words after them are not services.
_UP_VALUE_OPTIONS = frozenset({"--attach", "--exit-code-from", "--no-attach", "--pull",
                               "--scale", "-t", "--timeout", "--wait-timeout"})
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"

# Where the Docker CLI looks for its plugins (docker-compose is one), besides $DOCKER_CONFIG.
_PLUGIN_DIRS = ("/usr/local/lib/docker/cli-plugins", "/usr/local/libexec/docker/cli-plugins",
                "/usr/lib/docker/cli-plugins", "/usr/libexec/docker/cli-plugins")
CACHE_NAME = "compose-commands.json"
PROBE_TIMEOUT = 20.0


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

    from kompose_py.backends.docker import _docker_config

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


def _ask(program: Sequence[str], args: Sequence[str], env: Mapping[str, str],
         runner: Runner) -> str | None:
    """What the program prints on stdout, or None when it fails."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="kompose-probe-") as folder:
        out = Path(folder) / "out"
        outcome = runner.run(Command((*program, *args), Path(folder), env, stdin="null",
                                       stdout=out, capture_stderr=True, echo_stderr=False,
                                       timeout=PROBE_TIMEOUT))
        if not outcome.ok:
            return None
        return out.read_text(errors="replace")


def subcommands(program: Sequence[str], env: Mapping[str, str],
                runner: Runner) -> frozenset[str] | None:
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
    answer = _ask(program, ("version", "--short"), env, runner)
    if answer is None:
        return None
    version = f"{program[0]} {answer.strip()}"
    known = cache["versions"].get(version)
    if not isinstance(known, list):
        text = _ask(program, ("--help",), env, runner)
        names = parse_help(text or "")
        if not names:
            return None
        known = sorted(names | {"help"})  # cobra's own help command
        cache["versions"][version] = known
    cache["fingerprints"][key] = version
    _write_cache(path, cache)
    return frozenset(known)


def compose_program(env: Mapping[str, str]) -> list[str]:
    """``docker compose`` unless KOMPOSE_COMPOSE_CMD names another (``podman compose``)."""
    return shlex.split(env.get("KOMPOSE_COMPOSE_CMD") or "docker compose")


def compose_files(stack: Stack, env: Mapping[str, str]) -> list[Path]:
    """The files ``docker compose`` uses in this folder with this environment:
    ``COMPOSE_FILE`` (split on ``COMPOSE_PATH_SEPARATOR``, relative to the folder) when set,
    else the main file and the first override file found."""
    chosen = env.get("COMPOSE_FILE")
    if chosen:
        separator = env.get("COMPOSE_PATH_SEPARATOR") or os.pathsep
        return [stack.path / name for name in chosen.split(separator) if name]
    files = [stack.compose_file]
    for name in OVERRIDE_FILE_NAMES:
        if (stack.path / name).is_file():
            files.append(stack.path / name)
            break
    return files


_TOP_LEVEL_NAME = re.compile(r"^name[ \t]*:[ \t]*(.*?)[ \t]*(?:#.*)?$", re.MULTILINE)


def normalize_project_name(name: str) -> str:
    """Compose's normalisation of a derived project name: lower case, only [a-z0-9_-], no
    leading ``_`` or ``-``."""
    return re.sub(r"[^a-z0-9_-]", "", name.lower()).lstrip("_-")


def project_name(stack: Stack, env: Mapping[str, str]) -> str:
    """The Compose project name, as ``docker compose config`` reports it: COMPOSE_PROJECT_NAME
    as given (Compose refuses one that is not already normal), else the top-level ``name:`` of
    the last compose file that has one (interpolated, normalised), else the folder of the
    first compose file (normalised)."""
    given = env.get("COMPOSE_PROJECT_NAME")
    if given:
        return given
    files = compose_files(stack, env)
    declared = None
    for path in files:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        match = _TOP_LEVEL_NAME.search(text)
        if match and match[1]:
            declared = match[1]
    if declared is not None:
        from kompose_py.envfiles import substitute

        value = declared
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        with contextlib.suppress(ValueError):  # Compose says what is wrong with it
            value = substitute(value, env.get)
        if normalize_project_name(value):
            return normalize_project_name(value)
    return normalize_project_name((files[0].parent if files else stack.path).name)


_networks_cache: dict[tuple[str, ...], set[str] | str] = {}


def declared_networks(stack: Stack, values: Mapping[str, str], runner: Runner,
                      cached: bool = False) -> set[str] | str:
    """The names of the networks the stack's services join, in any profile, as ``docker
    compose config`` resolves them (``<project>_default``, an external network's own name);
    or why Compose could not say (``cached``: once per stack and kompose run, for listings
    and dry-runs)."""
    from kompose_py.backends.docker import _remembered

    return _remembered(_networks_cache, (str(stack.path),), cached,
                       lambda: _ask_compose(stack, values, runner))


def _ask_compose(stack: Stack, values: Mapping[str, str], runner: Runner) -> set[str] | str:
    import json  # only when the stack's networks are needed

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
    import json  # only for --status

    from kompose_py.backends.base import ServiceState

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



def compose_status(stack: Stack, env: Mapping[str, str], runner: Runner) -> StackStatus:
    """Services the stack's compose files declare and its containers as ``ps`` lists them."""
    import tempfile  # only for --status
    from dataclasses import replace

    from kompose_py.backends.base import HEALTH_STATES, StackStatus
    from kompose_py.masking import mask, secret_values

    program = compose_program(env)
    with tempfile.TemporaryDirectory(prefix=".kompose-status-") as tmp:
        services, error = _capture(runner, [*program, "config", "--services"], stack, env,
                                   Path(tmp))
        ps_text, ps_error = _capture(runner, [*program, "ps", "--all", "--format", "json"],
                                     stack, env, Path(tmp)) if services is not None \
            else (None, "")
    base = StackStatus(stack.name, None, ())
    if services is None or ps_text is None:
        return replace(base, error=mask(error or ps_error, secret_values(env)))
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


def attached_up_services(args: Sequence[str]) -> list[str] | None:
    """The services an attached ``up`` names (empty: all of them); None when ``args`` is not
    an attached ``up`` (``-d``, ``--detach`` and ``--wait`` return once started)."""
    if not args or args[0] != "up":
        return None
    services: list[str] = []
    words = iter(args[1:])
    for word in words:
        if word == "--":
            services.extend(words)
            break
        if word in ("-d", "--detach", "--wait") or word.startswith("--wait="):
            return None
        if word.startswith("-"):
            if word in _UP_VALUE_OPTIONS:
                next(words, None)
            elif not word.startswith("--") and len(word) > 2 and "d" in word[1:]:
                return None  # -dV: bundled short flags with -d
            continue
        services.append(word)
    return services


def _kill_on_abort(program: Sequence[str], args: Sequence[str], stack: Stack,
                   env: Mapping[str, str]) -> Command | None:
    """For an attached ``up``: what a second signal runs before kompose ends. Compose alone
    ignores a second SIGINT/SIGTERM (its graceful stop goes on for the whole grace period),
    and SIGKILLed it would leave the containers running: they are killed, the services the
    ``up`` named only (all of them when it named none)."""
    services = attached_up_services(args)
    if services is None:
        return None
    return Command((*program, "kill", *services), stack.path, env, stdin="null", timeout=30)


class Compose:
    """The Compose backend (see :class:`kompose_py.backends.base.Backend`)."""

    name = "compose"
    verbs = COMPOSE_COMMANDS
    offline = OFFLINE

    def program(self, env: Mapping[str, str]) -> list[str]:
        return compose_program(env)

    def files(self, stack: Stack, env: Mapping[str, str]) -> list[Path]:
        return compose_files(stack, env)

    def project(self, stack: Stack, env: Mapping[str, str]) -> str:
        return project_name(stack, env)

    def command(self, stack: Stack, env: Mapping[str, str], args: Sequence[str],
                interactive: bool) -> Command:
        # No -f: compose chooses the files itself in the stack folder, as a user typing
        # `docker compose` there gets (override file, COMPOSE_FILE, COMPOSE_PROFILES).
        foreground = interactive and bool(args) and args[0] in INTERACTIVE
        shown_env = env
        if foreground and attached_up_services(args) is not None and "COMPOSE_MENU" not in env:
            # Compose's navigation menu puts the terminal in raw mode: a typed Ctrl-C is then
            # a key for Compose alone (it stops and exits 0), never a SIGINT, and kompose
            # would call the run a success and run the post hooks.
            shown_env = {**env, "COMPOSE_MENU": "false"}
        return Command((*compose_program(env), *args), stack.path, shown_env,
                       foreground=foreground,
                       on_abort=_kill_on_abort(compose_program(env), args, stack, env))

    def perform(self, steps: Steps, stack: Stack, args: Sequence[str],
                interactive: bool) -> None:
        steps.run_command(f"{self.name} {args[0]}",
                          self.command(stack, steps.env, args, interactive))

    def refusal(self, verb: str, args: Sequence[str] = ()) -> str | None:
        return None

    def refused(self, stack: Stack, env: Mapping[str, str], verb: str,
                runner: Runner) -> list[str]:
        return []

    def findings(self, stack: Stack, env: Mapping[str, str],
                 runner: Runner) -> tuple[list[str], list[str]]:
        return [], []

    def subcommands(self, env: Mapping[str, str], runner: Runner) -> frozenset[str] | None:
        program = compose_program(env)
        return subcommands(program, env, runner) if program else None

    def owns(self, container: Container, stack: Stack, env: Mapping[str, str]) -> bool:
        return container.labels.get(PROJECT_LABEL, "") == project_name(stack, env)

    def service_of(self, container: Container) -> str:
        return container.labels.get(SERVICE_LABEL, "")

    def networks(self, stack: Stack, env: Mapping[str, str], runner: Runner,
                 cached: bool = False) -> set[str] | str:
        return declared_networks(stack, env, runner, cached)

    def status(self, stack: Stack, env: Mapping[str, str], runner: Runner) -> StackStatus:
        return compose_status(stack, env, runner)


COMPOSE = Compose()
