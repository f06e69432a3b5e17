"""Compose's arguments as a swarm stack reads them: each verb's options in the docker CLI's
spelling, and :func:`refusal`, why a command line cannot run on a swarm stack and what to use
instead. The refusal is asked before the first stack starts (cli/prechecks.py, through the
backend's ``refusal``), so an argument Swarm has no meaning for stops the run before any hook
instead of failing the stack half-way; each verb reads its arguments with the same functions.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

# The Compose subcommands a swarm stack runs (kept here, light, for shell completion too).
VERBS = frozenset({"up", "down", "ps", "logs", "restart", "config", "exec", "scale", "top"})
# Accepted by `up` and without effect: a deploy is always detached and waited for, builds
# nothing and pulls on the nodes.
UP_IGNORED = frozenset({"-d", "--detach", "--wait", "--remove-orphans", "--quiet-pull",
                        "--no-build", "--no-color", "--yes", "-y"})


def refusal(verb: str, rest: Sequence[str]) -> str | None:
    """Why ``verb rest`` cannot run on a swarm stack, naming the argument and what to use
    instead (None: it can)."""
    if verb == "up":
        limit = up_limit(rest, 1.0)
        return limit if isinstance(limit, str) else None
    if verb == "exec":
        try:
            exec_options(rest)
        except ValueError as exc:
            return str(exc)
        return None
    if verb == "logs":
        return _logs_refusal(rest)
    if verb == "scale":
        return scale_refusal(rest)
    if verb == "ps":
        return _ps_refusal(rest)
    if verb == "down":
        return _down_refusal(rest)
    if verb in ("restart", "top"):
        option = next((a for a in rest if a.startswith("-")), None)
        if option is None:
            return None
        why = ("a task stops within its service's stop_grace_period" if verb == "restart"
               else "it shows the processes of each running task")
        return f"{verb} {option}: no meaning on a swarm stack ({why}); use `{verb} [SERVICE…]`"
    return None


def up_limit(rest: Sequence[str], default: float) -> float | str:
    """The wait's limit from ``up``'s options (``--wait-timeout N``), or why an argument has
    no meaning on a swarm. Detached or not, ``up`` waits for convergence: a deploy is done
    when the cluster says so."""
    limit = default
    items = list(rest)
    while items:
        arg = items.pop(0)
        key, eq, value = arg.partition("=")
        if key == "--wait-timeout":
            text = value if eq else (items.pop(0) if items else "")
            try:
                limit = float(text)
            except ValueError:
                return f"up --wait-timeout takes seconds, not {text!r}"
        elif arg in UP_IGNORED:
            continue
        elif arg.startswith("-"):
            return (f"up {arg}: no meaning on a swarm stack (docker stack deploy takes the "
                    "whole file); use `up -d`, with --wait-timeout N to change the wait")
        else:
            return (f"up {arg}: a swarm stack is deployed whole; use `restart {arg}` or "
                    f"`scale {arg}=N` for one service")
    return limit


def _down_refusal(rest: Sequence[str]) -> str | None:
    """``docker stack rm`` removes services and networks, never volumes or images: a ``down
    -v`` that left the data behind in silence would be worse than none. -t and
    --remove-orphans change nothing (a task stops within its stop_grace_period)."""
    items = iter(rest)
    for arg in items:
        key, eq, _ = arg.partition("=")
        if key in ("-t", "--timeout"):
            if not eq:
                next(items, None)
        elif arg in ("-v", "--volumes") or key == "--rmi":
            return (f"down {arg}: a swarm stack's volumes and images stay on each node that "
                    "ran a task; use `down`, then `docker volume rm` / `docker image rm` on "
                    "those nodes")
        elif arg != "--remove-orphans":
            return f"down {arg}: no meaning on a swarm stack; use `down`"
    return None


_PS_FLAGS = frozenset({"-a", "--all", "-q", "--quiet", "--no-trunc"})


def _ps_refusal(rest: Sequence[str]) -> str | None:
    items = iter(rest)
    for arg in items:
        key, eq, _ = arg.partition("=")
        if key == "--format":
            if not eq:
                next(items, None)
        elif arg.startswith("-") and arg not in _PS_FLAGS:
            return (f"ps {arg}: no meaning on a swarm stack; use `ps [-a] [-q] [--no-trunc] "
                    "[--format F] [SERVICE…]` (docker stack ps)")
    return None


def ps_argv(rest: Sequence[str], project: str) -> tuple[str, ...]:
    """``docker stack ps`` of the running tasks (``-a``: the history too); SERVICE names
    become name filters."""
    show_all = False
    flags: list[str] = []
    names: list[str] = []
    items = iter(rest)
    for arg in items:
        if arg in ("-a", "--all"):
            show_all = True
        elif arg == "--format":
            flags += [arg, next(items, "")]
        elif arg.startswith("-"):
            flags.append(arg)
        else:
            names.append(arg)
    filters = [] if show_all else ["--filter", "desired-state=running"]
    for name in names:
        filters += ["--filter", f"name={project}_{name}"]
    return ("docker", "stack", "ps", *filters, *flags, project)


_LOG_VALUE = {"--tail": "--tail", "-n": "--tail", "--since": "--since", "--until": "--until"}
_LOG_FLAG = {"-f": "--follow", "--follow": "--follow", "-t": "--timestamps",
             "--timestamps": "--timestamps", "--no-log-prefix": "--raw"}
# docker service logs' own flags, passed as they are; Compose's --no-color is left out
# (service logs have no colours).
_LOG_DOCKER = frozenset({"--details", "--no-resolve", "--no-task-ids", "--no-trunc", "--raw"})


def _logs_refusal(rest: Sequence[str]) -> str | None:
    for arg in rest:
        key = arg.partition("=")[0]
        if (arg.startswith("-") and key not in _LOG_VALUE and arg not in _LOG_FLAG
                and arg not in _LOG_DOCKER and arg != "--no-color"
                and not re.fullmatch(r"-n[0-9]+", arg)):
            return (f"logs {arg}: no meaning on a swarm stack (docker service logs); use "
                    "`logs [-f] [-t] [-n N] [--since T] [--until T] [SERVICE…]`, each line "
                    "names its task")
    return None


def logs_options(rest: Sequence[str]) -> tuple[list[str], list[str]]:
    """Compose's ``logs`` options as ``docker service logs`` spells them, and the services."""
    options: list[str] = []
    names: list[str] = []
    items = iter(rest)
    for arg in items:
        key, eq, value = arg.partition("=")
        if key in _LOG_VALUE:
            options += [_LOG_VALUE[key], value if eq else next(items, "")]
        elif arg in _LOG_FLAG:
            options.append(_LOG_FLAG[arg])
        elif arg == "--no-color":
            continue
        elif arg.startswith("-"):
            options.append(arg)
        else:
            names.append(arg)
    return options, names


def scale_refusal(rest: Sequence[str]) -> str | None:
    """``scale`` takes SERVICE=REPLICAS arguments, nothing else."""
    if not rest:
        return "scale needs SERVICE=REPLICAS arguments (e.g. `scale app=2`)"
    for arg in rest:
        if arg.startswith("-"):
            return f"scale {arg}: no meaning on a swarm stack; use `scale SERVICE=REPLICAS…`"
        name, eq, count = arg.partition("=")
        if not (name and eq and count.isdigit()):
            return (f"scale {arg}: expected SERVICE=REPLICAS, a whole number of replicas "
                    f"(e.g. `scale {name or 'app'}=2`)")
    return None


_EXEC_VALUE = {"-e": "-e", "--env": "-e", "-u": "-u", "--user": "-u", "-w": "-w",
               "--workdir": "-w"}


def exec_options(rest: Sequence[str]) -> tuple[list[str], int | None, str, list[str]]:
    """Compose's ``exec [OPTIONS] SERVICE COMMAND…`` → docker exec flags, --index, service,
    command; ValueError says why they cannot run on a swarm stack."""
    flags: list[str] = []
    index: int | None = None
    items = list(rest)
    while items and items[0].startswith("-"):
        arg = items.pop(0)
        key, eq, value = arg.partition("=")
        if key in _EXEC_VALUE:
            flags += [_EXEC_VALUE[key], value if eq else (items.pop(0) if items else "")]
        elif key == "--index":
            text = value if eq else (items.pop(0) if items else "")
            if not text.isdigit():
                raise ValueError(f"exec --index {text!r}: expected a task's slot number "
                                 "(`ps` lists them: STACK_SERVICE.SLOT)")
            index = int(text)
        elif arg in ("-d", "--detach", "--privileged", "-T", "--no-TTY"):
            flags.append("-d" if arg == "--detach" else arg)
        elif arg in ("-i", "--interactive", "-t", "--tty"):
            continue
        else:
            raise ValueError(f"exec {arg}: no meaning on a swarm stack (docker exec into a "
                             "task); use -T, -d, -e, -u, -w, --privileged or --index N")
    if not items:
        raise ValueError("exec needs a SERVICE and a COMMAND (e.g. `exec app sh`)")
    service, command = items[0], items[1:]
    if not command:
        raise ValueError(f"exec {shlex.join(rest)}: no command to run in {service} "
                         f"(e.g. `exec {service} sh`)")
    return flags, index, service, command
