"""``--json``: the one writer of kompose's JSON documents (schemas in README.md): a run's
document at its end, a report's, an error's; all share one envelope."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

from kompose_py import __version__
from kompose_py.results import StackResult
from kompose_py.runner.supervisor import Supervisor, signal_name

SCHEMA_VERSION = 1


def envelope(command: str | None, **body: Any) -> dict[str, Any]:
    """What every document starts with: its schema, kompose's version and the command."""
    return {"schema": SCHEMA_VERSION, "kompose": __version__, "command": command, **body}


def write_report(out: TextIO, command: str, body: dict[str, Any]) -> None:
    """A report's document (--list, --status, db:list, hooks:*, env:*)."""
    write_document(out, envelope(command, **body))


def as_document(results: Sequence[StackResult], command: str, dry_run: bool,
                orchestrators: Mapping[str, str]) -> dict[str, Any]:
    """``orchestrators``: each stack's (``compose``, ``swarm``), from its merged environment."""
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    return {
        **envelope(command),
        "dry_run": dry_run,
        "summary": counts,
        "stacks": [
            {
                "stack": r.stack,
                "orchestrator": orchestrators.get(r.stack),
                "status": r.status,
                "exit_code": r.exit_code,
                "failed_step": r.failed_step or None,
                "duration_ms": round(r.duration * 1000),
                "message": r.message,
                "files": r.files,
                "warnings": r.warnings,
                "steps": [
                    {"name": s.name, "kind": s.kind, "scope": s.scope, "status": s.status,
                     "exit_code": s.exit_code, "duration_ms": round(s.duration * 1000),
                     "error": s.error}
                    for s in r.steps
                ],
                **({"details": r.details} if r.details is not None else {}),
            }
            for r in results
        ],
    }


def write_json(out: TextIO, results: Sequence[StackResult], command: str, dry_run: bool,
               orchestrators: Mapping[str, str], **extra: Any) -> None:
    """The run's document; ``extra``: top-level fields (``"signal": "SIGTERM"``)."""
    write_document(out, {**as_document(results, command, dry_run, orchestrators), **extra})


def abort_writer(done: Sequence[StackResult], command: str, dry_run: bool,
                 orchestrators: Mapping[str, str], supervisor: Supervisor) -> Callable[[], None]:
    """What a second signal writes before kompose ends at once: the document of the stacks
    finished so far, ``"aborted": true``. One ``os.write`` (this runs in a signal handler);
    skipped when the final document has begun, so stdout never holds two."""
    def write() -> None:
        if _started:
            return
        document = {**as_document(list(done), command, dry_run, orchestrators), "aborted": True,
                    "signal": signal_name(supervisor)}
        os.write(1, (json.dumps(document, indent=2) + "\n").encode())
    return write


_started: list[bool] = []


def error_document(message: str, hint: str | None, exit_code: int,
                   command: str | None = None) -> dict[str, Any]:
    """The document of a run that ended before any stack ran (usage error, no match) or in an
    internal error: the same shape, no stacks, and an ``error`` object."""
    return {**envelope(command), "dry_run": None, "summary": {}, "stacks": [],
            "error": {"message": message, "hint": hint, "exit_code": exit_code}}


def write_document(out: TextIO, document: dict[str, Any]) -> None:
    """One document on stdout. A reader that went away (``| head -c1``) is not an error: the
    run's own exit status stands, and nothing else is written to the closed pipe."""
    _started.append(True)
    try:
        out.write(json.dumps(document, indent=2) + "\n")
        out.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
        os.close(devnull)
