"""Inspecting hooks without running them: what is defined, what applies to
which command, syntax (``bash -n`` parses, it never executes), misspelt names, and hooks files
that someone else could change."""

from __future__ import annotations

import difflib
import functools
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from kompose_py import hooks
from kompose_py.backends.compose import COMPOSE_COMMANDS
from kompose_py.commands import TABLE
from kompose_py.runner.command import Command
from kompose_py.runner.run import Runner

_NAME = re.compile(r"hook_(pre|post|error|finally)_(\w+)")


@functools.cache
def valid_names() -> dict[str, str]:
    """Every valid hook function name → the command it applies to."""
    names = {}
    hooked = [spec.name for spec in TABLE if spec.hooked]
    for command in (*sorted(COMPOSE_COMMANDS), *hooked):
        for phase in hooks.PHASES:
            names[hooks.function_name(phase, command)] = command
    return names


def command_of(function: str) -> str | None:
    """The command a hook applies to: known ones by name, unknown compose subcommands too
    (``hook_pre_my_plugin`` → ``my-plugin``), None when the name has no phase."""
    known = valid_names()
    if function in known:
        return known[function]
    match = _NAME.fullmatch(function)
    return match[2].replace("_", "-") if match else None


@dataclass(frozen=True)
class HookInfo:
    function: str
    command: str | None
    file: Path
    line: int
    scope: str


def list_hooks(root_file: Path, stack_file: Path) -> list[HookInfo]:
    found = []
    for file, scope in ((root_file, "root"), (stack_file, "stack")):
        for function, line in hooks.definitions(file):
            found.append(HookInfo(function, command_of(function), file, line, scope))
    return found


@dataclass(frozen=True)
class Finding:
    level: Literal["error", "warning"]
    file: Path
    line: int | None
    message: str


@functools.cache
def _hooked_commands() -> tuple[str, ...]:
    """Every command a hook can apply to, as it appears in a function name."""
    return tuple(sorted({c.replace("-", "_").replace(":", "_") for c in valid_names().values()}))


@functools.lru_cache(maxsize=4096)
def _closest_command(command: str) -> str | None:
    close = difflib.get_close_matches(command, _hooked_commands(), n=1, cutoff=0.6)
    return close[0] if close else None


def closest_name(function: str) -> str | None:
    """The valid hook name a misspelt one most likely meant. The phase and the command are
    matched on their own (a few dozen short words, cached), so that a file with thousands
    of unknown names is checked in well under a second."""
    match = _NAME.fullmatch(function)
    if match:
        phase, command = match[1], match[2]
        close = _closest_command(command)
        return f"hook_{phase}_{close}" if close else None
    for phase in hooks.PHASES:  # a misspelt phase: hook_pos_up, hook_pre-up, hook_finaly_up
        prefix, _, command = function.removeprefix("hook_").partition("_")
        if difflib.SequenceMatcher(None, prefix, phase).ratio() >= 0.6:
            name = f"hook_{phase}_{command}"
            if name in valid_names():
                return name
    matches = difflib.get_close_matches(function, valid_names(), n=1, cutoff=0.6)
    return matches[0] if matches else None


def check_file(path: Path, runner: Runner,
               refusal: Callable[[str], str | None] | None = None) -> list[Finding]:
    """Every problem of one hooks file; nothing in it is executed. ``refusal``: the stack's
    backend's, for a stack whose backend refuses some commands (Swarm has no ``build``)."""
    findings: list[Finding] = []
    if not path.is_file():
        return findings
    outcome = runner.run(Command(("bash", "-n", str(path)), path.parent, dict(os.environ),
                                 stdin="null", stdout="null", capture_stderr=True,
                                 echo_stderr=False))
    if not outcome.ok:
        seen: set[int | None] = set()
        for text in outcome.stderr_tail or (outcome.error or "bash -n failed",):
            match = re.search(r": line (\d+): (.*)", text)
            line = int(match[1]) if match else None
            if line in seen:
                continue  # bash follows "syntax error near `}'" with the offending text
            seen.add(line)
            findings.append(Finding("error", path, line, match[2] if match else text))
    known = valid_names()
    for function, line in hooks.definitions(path):
        if function in known:
            why = refusal(known[function]) if refusal is not None else None
            if why:
                findings.append(Finding("warning", path, line,
                                        f"{function} never runs: {why}"))
            continue
        close = closest_name(function)
        hint = f"; did you mean {close}?" if close else ""
        findings.append(Finding("error", path, line,
                                f"{function} matches no known hook point{hint}"))
    info = path.stat()
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        who = " and ".join(w for w, bit in (("group", stat.S_IWGRP), ("others", stat.S_IWOTH))
                           if info.st_mode & bit)
        findings.append(Finding("warning", path, None,
                                f"writable by {who} (mode {stat.S_IMODE(info.st_mode):o}): "
                                "whoever can write it runs code as you; chmod go-w"))
    if info.st_uid != os.getuid():
        findings.append(Finding("warning", path, None,
                                f"owned by uid {info.st_uid}, not by you (uid {os.getuid()})"))
    return findings
