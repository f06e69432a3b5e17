"""``--json``: one document on stdout at the end of a run (schema in README.md)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TextIO

from kompose_py import __version__
from kompose_py.results import StackResult

SCHEMA_VERSION = 1


def as_document(results: Sequence[StackResult], command: str, dry_run: bool) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    return {
        "schema": SCHEMA_VERSION,
        "kompose": __version__,
        "command": command,
        "dry_run": dry_run,
        "summary": counts,
        "stacks": [
            {
                "stack": r.stack,
                "status": r.status,
                "exit_code": r.exit_code,
                "failed_step": r.failed_step or None,
                "duration_ms": round(r.duration * 1000),
                "message": r.message,
                "files": r.files,
                "steps": [
                    {"name": s.name, "kind": s.kind, "scope": s.scope, "status": s.status,
                     "exit_code": s.exit_code, "duration_ms": round(s.duration * 1000),
                     "error": s.error}
                    for s in r.steps
                ],
            }
            for r in results
        ],
    }


def write_json(out: TextIO, results: Sequence[StackResult], command: str, dry_run: bool) -> None:
    out.write(json.dumps(as_document(results, command, dry_run), indent=2) + "\n")
    out.flush()
