"""Named results of a run and the protocol through which the core reports progress.

The core never prints: it tells a :class:`Reporter` what happens, with every text already
secret-masked. The CLI renders it (human lines, prefixed lines, JSON).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from kompose_py.runner.command import Status

StackStatus = Literal["success", "failed", "timeout", "cancelled", "skipped", "not run"]


@dataclass(frozen=True, eq=False)
class StepResult:
    """One hook or command of a stack's run."""

    name: str  # "pre_up", "compose up", "pg_dump", ...
    kind: Literal["hook", "command"]
    status: Status
    exit_code: int
    duration: float
    scope: str | None = None  # "root" / "stack" for hooks
    error: str | None = None


@dataclass(eq=False)
class StackResult:
    """What became of one stack."""

    stack: str
    status: StackStatus
    steps: list[StepResult] = field(default_factory=list)
    failed_step: str = ""  # "pre", "command", "post", or ""
    exit_code: int = 0
    duration: float = 0.0
    message: str | None = None
    files: list[str] = field(default_factory=list)
    # What the user must know although the stack succeeded (a newer dump passed over, a
    # setting left out), one line each.
    warnings: list[str] = field(default_factory=list)
    # A command's own findings for --json ("details"; a verification: what was checked, which
    # tables differ); None: the command has none.
    details: dict[str, Any] | None = None


class Reporter(Protocol):
    def stack_start(self, stack: str, env_files: Sequence[Path], overrides: Sequence[str],
                    dry_run: bool) -> None: ...

    def hook_start(self, stack: str, name: str, scope: str, args: Sequence[str],
                   dry_run: bool, condition: str = "") -> None: ...

    def step_end(self, stack: str, step: StepResult) -> None: ...

    def command_start(self, stack: str, display: str, dry_run: bool) -> None: ...

    def note(self, stack: str, text: str) -> None: ...

    def progress(self, stack: str, size: int) -> None:
        """Bytes written so far by a long step (a dump); only called for a terminal."""

    def stack_end(self, stack: str, result: StackResult) -> None: ...
