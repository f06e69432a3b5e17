"""``kompose --status [PATTERN]``: one line per stack and a total, or one JSON document
(schema in README.md). Exit 0 when every expected service of every stack runs and none is
unhealthy, 1 otherwise."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from kompose_py import stacks
from kompose_py.backends.base import HEALTH_STATES, StackStatus
from kompose_py.cli.listing import age
from kompose_py.cli.output import Painter, plural
from kompose_py.cli.report import write_report
from kompose_py.db.settings import settings_for
from kompose_py.envfiles import EnvBuilder
from kompose_py.runner.run import Runner
from kompose_py.status import query_all


def show_status(root: Path, pattern: str, builder: EnvBuilder, out: TextIO, color: bool,
                as_json: bool, runner: Runner) -> int:

    selected = stacks.select(stacks.discover(root), pattern, root)
    envs = {s.name: builder.for_stack(s.env_file) for s in selected}
    databases = {}
    for name, env in envs.items():
        settings = settings_for(env)
        databases[name] = settings.name if settings else None
    found = query_all(selected, envs, databases, dict(os.environ), runner)
    ok = all(s.ok for s in found)
    if as_json:
        write_report(out, "--status", document(found, ok))
    else:
        render(found, out, Painter(color))
    return 0 if ok else 1


def _totals(found: Sequence[StackStatus]) -> dict[str, int]:
    totals = {"stacks": len(found), "stacks_ok": sum(s.ok for s in found),
              "expected": sum(len(s.expected) for s in found),
              "running": sum(len(s.running) for s in found)}
    for state in HEALTH_STATES:
        totals[state] = sum(s.health.get(state, 0) for s in found)
    return totals


def document(found: Sequence[StackStatus], ok: bool) -> dict[str, Any]:
    return {
        "ok": ok,
        "total": _totals(found),
        "stacks": [
            {
                "stack": s.stack,
                "orchestrator": s.orchestrator,
                "ok": s.ok,
                "engine": s.engine,
                "expected": list(s.expected),
                "running": list(s.running),
                "health": {k: s.health.get(k, 0) for k in HEALTH_STATES},
                "ports": list(s.ports),
                "containers": [{"service": c.service, "name": c.container, "state": c.state,
                                "health": c.health or None, "ports": list(c.ports)}
                               for c in s.containers],
                "services": [{"service": d.service, "running": d.running, "desired": d.desired,
                              "nodes": list(d.nodes), "update": d.update or None}
                             for d in s.services],
                "database": s.database,
                "newest_dump": None if s.newest_dump is None else {
                    "file": str(s.newest_dump), "age_seconds": round(s.dump_age_seconds or 0)},
                "error": s.error,
            }
            for s in found
        ],
    }


def _health_text(s: StackStatus) -> str:
    return ", ".join(f"{s.health[k]} {k}" for k in HEALTH_STATES if s.health.get(k)) or "-"


def render(found: Sequence[StackStatus], out: TextIO, paint: Painter) -> None:
    show_engine = any(s.engine for s in found)
    show_orchestrator = any(s.orchestrator != "compose" for s in found)
    head = ["STACK", *(["ORCHESTRATOR"] if show_orchestrator else []),
            *(["ENGINE"] if show_engine else []), "SERVICES", "HEALTH", "PORTS", "LAST DUMP"]
    rows: list[tuple[list[str], str]] = [(head, "bold")]
    below: dict[int, list[str]] = {}  # row -> per-service lines (replicas, nodes, update)
    for s in found:
        dump = "-" if s.database is None else (
            "none" if s.dump_age_seconds is None else age(s.dump_age_seconds))
        services = "?" if s.error else f"{len(s.running)}/{len(s.expected)}"
        cells = [s.stack, *([s.orchestrator] if show_orchestrator else []),
                 *([s.engine or "-"] if show_engine else []), services,
                 _health_text(s), ", ".join(s.ports) or "-", dump]
        below[len(rows)] = [
            f"    {d.service}: {d.running}/{d.desired} running"
            + (f" on {', '.join(d.nodes)}" if d.nodes else "")
            + (f", update {d.update}" if d.update else "") for d in s.services]
        if s.error:
            cells[-1] = f"{dump}  error: {s.error}"
        rows.append((cells, "" if s.ok else "red"))
    widths = [max(len(r[0][i]) for r in rows) for i in range(len(head) - 1)]
    for n, (cells, style) in enumerate(rows):
        text = "  ".join([c.ljust(widths[i]) for i, c in enumerate(cells[:-1])] + [cells[-1]])
        out.write(paint(text.rstrip(), style) + "\n")
        for line in below.get(n, ()):
            out.write(paint(line, style) + "\n")
    t = _totals(found)
    health = ", ".join(f"{t[k]} {k}" for k in HEALTH_STATES if t[k])
    line = (f"Total: {t['running']}/{t['expected']} services running in "
            f"{plural(t['stacks'], 'stack')}{'; ' + health if health else ''}; "
            f"{t['stacks_ok']}/{t['stacks']} stacks ok")
    out.write(paint(line, "bold", "" if t["stacks_ok"] == t["stacks"] else "red") + "\n")
