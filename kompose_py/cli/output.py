"""Human output: stack headers, hook and command lines, results and the summary.

Plain ANSI rather than Rich on this path: Rich's console costs ~30 ms of import time, and a
dry-run must stay within 1.3x of ``import typer`` (bench/run.py). One lock per stream keeps lines
whole when several stacks run at once.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from kompose_py.results import StackResult, StepResult

RULE = "━" * 51


def use_color(stream: TextIO, no_color: bool) -> bool:
    if no_color or os.environ.get("NO_COLOR"):  # no-color.org: set and not empty
        return False
    return stream.isatty()


_CODES = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "blue": "34",
          "cyan": "36"}


class Painter:
    def __init__(self, color: bool) -> None:
        self.color = color

    def __call__(self, text: str, *styles: str) -> str:
        if not self.color or not styles:
            return text
        codes = ";".join(_CODES[s] for s in styles if s)
        if not codes:
            return text
        return f"\033[{codes}m{text}\033[0m"


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def relative(path: Path, root: Path) -> str:
    """A path as the user thinks of it: under the root when it is there."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def seconds(value: float) -> str:
    return f"{value:.1f}s" if value < 60 else f"{int(value // 60)}m{value % 60:04.1f}s"


def describe_failure(status: str, exit_code: int) -> str:
    if status == "timeout":
        return "timed out"
    if status == "cancelled":
        return "cancelled"
    return f"exit {exit_code}"


class HumanReporter:
    """Writes kompose's own lines to one stream (stderr, so stdout stays the command's)."""

    def __init__(self, stream: TextIO, color: bool, root: Path,
                 prefix_lines: bool = False, quiet: bool = False, verbose: bool = False,
                 dry_run: bool = False, label_width: int = 0) -> None:
        self.dry_run = dry_run
        self.stream = stream
        self.quiet = quiet
        self.verbose = verbose
        self.paint = Painter(color)
        self.root = root
        self.prefix_lines = prefix_lines
        self.lock = threading.Lock()
        self.label_width = label_width  # stack names are padded to this in prefixed lines
        self._progress_shown = False
        # Told when the stream's reader went away (`2>&1 | head -1`): the run then stops.
        self.on_closed: Callable[[int], None] | None = None

    def _emit(self, text: str) -> None:
        """Write under the lock (held by the caller); a reader that went away stops the run
        instead of crashing it."""
        try:
            self.stream.write(text)
            self.stream.flush()
        except BrokenPipeError:
            if self.on_closed is not None:
                self.on_closed(self.stream.fileno())

    def _write(self, stack: str | None, text: str) -> None:
        lines = text.split("\n")
        if self.prefix_lines and stack:
            label = self.paint(stack.ljust(self.label_width), "cyan")
            lines = [f"{label} | {line}" for line in lines]
        with self.lock:
            if self._progress_shown:
                lines[0] = "\r\033[K" + lines[0]
                self._progress_shown = False
            self._emit("\n".join(lines) + "\n")

    # -- Reporter protocol ------------------------------------------------------------
    def stack_start(self, stack: str, env_files: Sequence[Path], overrides: Sequence[str],
                    dry_run: bool) -> None:
        if self.quiet:
            return
        title = self.paint(f"▶ {stack}", "bold", "blue")
        if dry_run:
            title += self.paint("  (dry-run: nothing runs)", "yellow")
        lines = [title]
        if dry_run or self.verbose:
            files = ", ".join(relative(f, self.root) for f in env_files) or "none"
            lines.append(f"  env files: {files}")
        if overrides:
            lines.append("  overrides: " + " ".join(overrides))
        self._write(stack, "\n".join(lines))

    def hook_start(self, stack: str, name: str, scope: str, args: Sequence[str],
                   dry_run: bool, condition: str = "") -> None:
        if self.quiet:
            return
        where = " (root hooks.sh)" if scope == "root" else ""
        shown = " ".join(args)
        text = f"  {self.paint('[HOOK]', 'cyan')} {name}{' ' + shown if shown else ''}{where}"
        if dry_run:
            text += self.paint(f"  would run{' ' + condition if condition else ''}", "yellow")
        self._write(stack, text)

    def command_start(self, stack: str, display: str, dry_run: bool) -> None:
        if self.quiet:
            return
        text = f"  {self.paint('$', 'dim')} {display}"
        if dry_run:
            text += self.paint("  would run", "yellow")
        self._write(stack, text)

    def step_end(self, stack: str, step: StepResult) -> None:
        if self.dry_run and step.status == "success":
            return  # nothing ran: the "would run" line said it all
        label = f"{self.paint('[HOOK]', 'cyan')} {step.name}" if step.kind == "hook" else step.name
        if step.status == "success":
            if self.quiet:
                return
            mark = self.paint("✓", "green")
            self._write(stack, f"  {label} {mark} {seconds(step.duration)}")
            return
        mark = self.paint("✗", "red")
        detail = step.error or describe_failure(step.status, step.exit_code)
        if step.error and step.status != "failed":
            detail = f"{describe_failure(step.status, step.exit_code)}: {step.error}"
        self._write(stack, f"  {label} {mark} {detail} ({seconds(step.duration)})")

    def note(self, stack: str, text: str) -> None:
        if self.quiet:
            return
        self._write(stack, f"  {text}")

    def stack_end(self, stack: str, result: StackResult) -> None:
        if self.quiet and result.status in ("success", "skipped"):
            return
        if result.status == "success":
            done = "plan ok" if self.dry_run else seconds(result.duration)
            self._write(stack, f"{self.paint('✓', 'green')} {stack} {done}")
        elif result.status == "skipped":
            self._write(stack, f"{self.paint('⊘', 'yellow')} {stack} skipped: {result.message}")
        elif result.status == "not run":
            self._write(stack, f"{self.paint('⊘', 'yellow')} {stack} not run: {result.message}")
        else:
            where = f" at {result.failed_step}" if result.failed_step else ""
            why = describe_failure(result.status, result.exit_code)
            said = f": {result.message}" if result.message and not result.steps else ""
            self._write(stack, f"{self.paint('✗', 'red')} {stack} {result.status}{where} "
                               f"({why}, {seconds(result.duration)}){said}")

    def progress(self, stack: str, size: int) -> None:
        """A live byte counter on one terminal line, replaced by the next real line."""
        from kompose_py.db.dumpfiles import human_size

        with self.lock:
            self._emit(f"\r\033[K  {stack}: {human_size(size)} written")
            self._progress_shown = True

    # -- end of run -------------------------------------------------------------------
    def summary(self, results: Sequence[StackResult], elapsed: float) -> None:
        count = {s: 0 for s in ("success", "failed", "skipped", "cancelled", "not run")}
        for r in results:
            key = "failed" if r.status == "timeout" else r.status
            count[key] += 1
        parts = [self.paint(f"{count['success']} succeeded", "green"),
                 self.paint(f"{count['failed']} failed", "red" if count["failed"] else ""),
                 f"{count['skipped']} skipped"]
        if count["cancelled"]:
            parts.append(self.paint(f"{count['cancelled']} cancelled", "red"))
        if count["not run"]:
            parts.append(f"{count['not run']} not run")
        n = len(results)
        title = "Summary (dry-run, nothing ran)" if self.dry_run else "Summary"
        line = (f"{title}: {', '.join(parts)} out of {plural(n, 'stack')} "
                f"({seconds(elapsed)})")
        failed = [r for r in results if r.status in ("failed", "timeout", "cancelled")]
        lines = [RULE, line]
        for r in failed:
            why = r.message or describe_failure(r.status, r.exit_code)
            where = f" at {r.failed_step}" if r.failed_step else ""
            lines.append(f"  {self.paint('✗', 'red')} {r.stack}{where}: {why}")
        lines.append(RULE)
        self._write(None, "\n".join(lines))
