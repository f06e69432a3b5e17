"""Bash hooks: which functions a hooks.sh defines (by reading its text) and how one is called.

A hook call is a fresh ``bash --noprofile --norc`` running the constant script below; the
hooks file, the function name and the arguments arrive as ``"$@"`` and are never spliced into
shell text. Nothing here runs a hooks file: only a real run sources it, one process per call.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from kompose_py.errors import ConfigError
from kompose_py.runner.command import Command

PHASES = ("pre", "post", "error", "finally")

# name() {   name () {   function name {   function name() {
_DEFINITION = re.compile(
    r"^[ \t]*(?:function[ \t]+(hook_\w+)[ \t]*(?:\([ \t]*\))?|(hook_\w+)[ \t]*\([ \t]*\))",
    re.MULTILINE,
)

# Sourcing runs with errexit so a failing top-level command fails the hook point;
# the function itself runs with the shell's defaults, as it did under kompose.sh.
# $1: hooks file, $2: function, the rest: its arguments. A function the scan saw but that the
# file does not define at run time (a conditional definition in a root hooks.sh) is skipped.
HOOK_SCRIPT = r"""
__kompose_file=$1 __kompose_fn=$2
shift 2
__kompose_args=("$@")
set --
__kompose_loaded=0
__kompose_report() {
  # Sourcing ended the shell (a failing command, or an `exit`, even `exit 0`): the hook
  # point fails, whatever status it left.
  local status=$?
  [ "$__kompose_loaded" = 1 ] && exit "$status"
  printf 'kompose: sourcing %s failed\n' "$__kompose_file" >&2
  [ "$status" = 0 ] && exit 1
  exit "$status"
}
trap __kompose_report EXIT
set -e
. "$__kompose_file"
set +e
__kompose_loaded=1
declare -F -- "$__kompose_fn" >/dev/null || exit 0
"$__kompose_fn" "${__kompose_args[@]}"
"""


@dataclass(frozen=True, eq=False)
class Hook:
    """One hook function call."""

    function: str
    file: Path
    scope: str  # "root" or "stack"


def function_name(phase: str, command: str) -> str:
    """``hook_<phase>_<cmd>`` with ``-`` and ``:`` turned into ``_`` (``ns:name`` → ``ns_name``)."""
    return f"hook_{phase}_{command.replace('-', '_').replace(':', '_')}"


@cache
def _definitions(path: Path, mtime_ns: int) -> tuple[tuple[str, int], ...]:
    text = path.read_text(encoding="utf-8", errors="replace")
    found = []
    line, counted = 1, 0
    for m in _DEFINITION.finditer(text):
        # Count only the newlines since the previous match: linear in the file's size.
        line += text.count("\n", counted, m.start())
        counted = m.start()
        found.append((m[1] or m[2], line))
    return tuple(found)


def definitions(path: Path) -> tuple[tuple[str, int], ...]:
    """``(function, line)`` of every ``hook_*`` definition, found by reading the file
    (never by running it). Only a regular file is read: a FIFO would block forever."""
    try:
        info = path.stat()
    except OSError:
        return ()
    if not stat.S_ISREG(info.st_mode):
        return ()
    return _definitions(path, info.st_mtime_ns)


def check_hooks_file(path: Path) -> None:
    """A hooks.sh that is there but is no readable regular file is a configuration error,
    found before anything runs (it must not silently mean "no hooks")."""
    if not os.path.lexists(path):
        return
    from kompose_py.files import regular_file

    regular_file(path, "a hooks file")
    if not os.access(path, os.R_OK):
        raise ConfigError(f"{path}: cannot read (permission denied)")


def defined_functions(path: Path) -> frozenset[str]:
    return frozenset(name for name, _ in definitions(path))


def hooks_for(phase: str, command: str, root_file: Path, stack_file: Path) -> list[Hook]:
    """The hooks to call for one hook point, in order: root first for pre, last otherwise."""
    name = function_name(phase, command)
    found = []
    for file, scope in ((root_file, "root"), (stack_file, "stack")):
        if name in defined_functions(file):
            found.append(Hook(name, file, scope))
    if phase != "pre":
        found.reverse()
    return found


def hook_command(hook: Hook, args: Sequence[str], cwd: Path, env: Mapping[str, str],
                 timeout: float | None) -> Command:
    argv = ("bash", "--noprofile", "--norc", "-c", HOOK_SCRIPT, "kompose-hook",
            str(hook.file), hook.function, *args)
    return Command(argv, cwd, env, stdin="null", timeout=timeout, tagged=True)
