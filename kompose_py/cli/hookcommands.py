"""hooks:list and hooks:check."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from kompose_py.envfiles import StackEnv
from kompose_py.errors import UsageError
from kompose_py.pipeline import RunContext
from kompose_py.results import StackResult
from kompose_py.stacks import Stack

Factory = Callable[[RunContext, dict[str, StackEnv], Sequence[Stack]],
                   Callable[[Stack], StackResult]]


def factory(command: str, args: Sequence[str]) -> Factory:
    raise UsageError(f"{command} is not available yet")
