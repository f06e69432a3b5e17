"""Checks of a backend command (``up``, ``ps``, …) made before the first stack starts: is
COMMAND something each stack's backend knows, is each stack's engine there, and will ``up``
without ``-d`` hold the run on the first stack."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, TextIO

from kompose_py import commands
from kompose_py.backends.choose import backend_for
from kompose_py.envfiles import StackEnv
from kompose_py.errors import ConfigError, UsageError
from kompose_py.stacks import Stack

if TYPE_CHECKING:
    from kompose_py.backends.docker import Engine
    from kompose_py.runner.run import Runner


def _quote(pattern: str) -> str:
    return f'"{pattern}"'


def check_subcommand(command: str, args: Sequence[str], pattern: str,
                     selected: Sequence[Stack], envs: Mapping[str, StackEnv],
                     runner: Runner) -> None:
    """A COMMAND that a selected stack's backend does not know, or runs not with these
    arguments (``up SERVICE`` on a swarm stack), is a usage error (exit 2), with the
    closest name or what to use instead. One question per distinct program, answered from
    the cache on every later run."""
    asked: dict[tuple[str, ...], frozenset[str] | None] = {}
    for stack in selected:
        env = envs[stack.name].values
        backend = backend_for(env)
        why = backend.refusal(command, args)
        if why:
            raise UsageError(f"{stack.name}: {why}",
                             hint=f"{stack.name} runs on {backend.name} (KOMPOSE_ORCHESTRATOR)")
        if command in backend.verbs:
            continue  # the backend's own commands: no question, no cache read (common path)
        program = tuple(backend.program(env))
        if program not in asked:
            asked[program] = backend.subcommands(env, runner)
        known = asked[program]
        if known is None or command in known:
            continue
        import difflib  # only on the error path

        shown = " ".join(program)
        close = difflib.get_close_matches(command, [*known, *commands.BY_NAME], n=1)
        rest = " ".join(args)
        if pattern in known:
            # `kompose up web`: the command went where the pattern belongs.
            hint = f"the pattern comes first: kompose {_quote(command)} {pattern}"
        elif close:
            hint = f"did you mean: kompose {_quote(pattern)} {close[0]}{' ' + rest if rest else ''}"
        else:
            hint = f"`{shown} --help` lists its commands"
        raise UsageError(f"{command!r} is neither a {shown} command nor a kompose command",
                         hint=hint)


def check_definitions(command: str, selected: Sequence[Stack], envs: Mapping[str, StackEnv],
                      runner: Runner, out: TextIO) -> None:
    """A stack whose definition its backend refuses to run (a swarm stack with
    ``privileged:``) stops the run before the first hook: exit 2, one line per key."""
    lines = []
    refusing = []
    for stack in selected:
        env = envs[stack.name].values
        found = backend_for(env).refused(stack, env, command, runner)
        lines += [f"{stack.name}: {line}" for line in found]
        if found:
            refusing.append(stack.name)
    if lines:
        for line in lines:
            out.write(f"kompose: error: {line}\n")
        raise ConfigError(f"{len(lines)} key(s) of {', '.join(refusing)} cannot run on "
                          f"swarm; nothing ran", hint="change or remove these keys, or run "
                          "the stack with KOMPOSE_ORCHESTRATOR=compose")


def misplaced_command(args: Sequence[str]) -> str | None:
    """For ``kompose up -d`` (a command where the pattern belongs): the line meant."""
    word = args[0] if args else ""
    if not re.fullmatch(r"[a-z][a-z-]*", word) or word not in _common_commands():
        return None
    return " ".join(["kompose", _quote("*"), *args])


def _common_commands() -> frozenset[str]:
    from kompose_py.backends.compose import COMPOSE_COMMANDS

    return COMPOSE_COMMANDS


def _detached(args: Sequence[str]) -> bool:
    for arg in args:
        if arg == "--":
            break
        if arg in ("-d", "--detach", "--wait") or arg.startswith(("--detach=t", "--wait=t")):
            return True
        if re.fullmatch(r"-[a-zA-Z]*d[a-zA-Z]*", arg) and not arg.startswith("--"):
            return True  # a cluster of short flags: -dV
    return False


def attach_warning(command: str, args: Sequence[str], stacks: int, parallel: int) -> str | None:
    """``up`` without ``-d`` attaches to its stack's containers until they stop or Ctrl-C:
    over several stacks one at a time the second one only starts after that. (Compose v2's
    ``start`` and ``restart`` never attach.)"""
    if command != "up" or stacks < 2 or parallel > 1 or _detached(args):
        return None
    return (f"`up` without -d attaches to the first stack, and the other {stacks - 1} start "
            "only after it ends (Ctrl-C); use `up -d`, or `-j N` to run them side by side")


def unreachable_engines(selected: Sequence[Stack], envs: Mapping[str, StackEnv],
                        out: TextIO) -> dict[str, str]:
    """Stacks whose engine does not answer → why (for their "not run" line); one line per
    engine on ``out``."""
    from kompose_py.backends import docker  # only when a stack will talk to its engine

    by_engine: dict[Engine, list[str]] = {}
    for stack in selected:
        env = envs[stack.name].values
        program = backend_for(env).program(env)
        if not program or os.path.basename(program[0]) not in ("docker", "docker-compose"):
            continue  # podman and others find their engine their own way
        engine = docker.engine_of(env)
        if engine is not None:
            by_engine.setdefault(engine, []).append(stack.name)
    blocked: dict[str, str] = {}
    for engine, names in by_engine.items():
        why = docker.unreachable(engine)
        if why is None:
            continue
        out.write(f"kompose: error: cannot reach the Docker engine at {engine}: {why}; "
                  f"not running {', '.join(names)}\n")
        out.write("kompose: hint: start that engine, or point DOCKER_HOST / DOCKER_CONTEXT "
                  "(shell or the stack's .env) at one that runs\n")
        for name in names:
            blocked[name] = f"Docker engine unreachable: {engine}: {why}"
    out.flush()
    return blocked


def before_backend(command: str, args: Sequence[str], pattern: str, selected: Sequence[Stack],
                   envs: Mapping[str, StackEnv], parallel: int, dry_run: bool, runner: Runner,
                   out: TextIO) -> dict[str, str]:
    """Every check of a backend command; returns the stacks that must not run (their engine
    is unreachable) with the reason. Raises UsageError for an unknown subcommand."""
    check_subcommand(command, args, pattern, selected, envs, runner)
    check_definitions(command, selected, envs, runner, out)
    # Only Compose attaches: a swarm `up` returns once its services have converged.
    attaching = [s for s in selected if backend_for(envs[s.name].values).name == "compose"]
    warning = attach_warning(command, args, len(attaching), parallel)
    if warning:
        out.write(f"kompose: warning: {warning}\n")
    if dry_run or all(command in backend_for(envs[s.name].values).offline for s in selected):
        return {}
    return unreachable_engines(selected, envs, out)
