"""A worker of the real 3-node cluster whose engine stops (issue 18): its dockerd ends, the
manager sees the node Down, and what kompose does with the stacks pinned to it -- `up`,
`db:export` of a PostgreSQL service whose task was there, `exec` and `top` of a task there --
ends in one clear line, with nothing half-done. The node is started again afterwards (Ready,
its data kept), so the session's other tests still have three nodes.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.conftest import Result, make_stacks, run_kompose
from tests.dbharness import wait_for
from tests.swarmfixture import SwarmCluster, engine_stopped
from tests.test_swarm_backend import HOOKS, hook_log, root_env
from tests.test_swarm_db import PG_STACK, clients

PASSWORD = "node-pw-" + uuid.uuid4().hex[:8]
PINNED = """services:
  app:
    image: busybox:latest
    init: true
    command: ["sleep", "3600"]
    deploy: {placement: {constraints: [node.hostname==%s]}}
"""


def summary(r: Result, stack: str) -> str:
    """The summary's line for ``stack``: the one line a user reads."""
    (line,) = [x for x in r.err.splitlines() if x.startswith(f"  ✗ {stack} at ")]
    return line


def running(cluster: SwarmCluster, service: str) -> bool:
    """Its one task meant to run is running. (Not `service ls`'s 1/1: right after the node is
    back, that may still count the task the node ran before it went down.)"""
    states = cluster.docker("service", "ps", "--filter", "desired-state=running", "--format",
                            "{{.CurrentState}}", service).stdout.splitlines()
    return len(states) == 1 and states[0].startswith("Running")


def dumps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".sql" in p.name)


@pytest.mark.docker
def test_a_node_whose_engine_stops(tmp_path: Path, swarm_cluster: SwarmCluster) -> None:
    node = swarm_cluster.workers[-1]
    tag = uuid.uuid4().hex[:6]
    db, app, late = f"ndb{tag}", f"napp{tag}", f"nlate{tag}"
    root = make_stacks(tmp_path / "root", {
        ".env": root_env(swarm_cluster), "hooks.sh": HOOKS,
        db: {"compose.yaml": "".join(x for x in (PG_STACK % ("", node.hostname)).splitlines(True)
                                     if "ports:" not in x),
             ".env": f"DB_HOST=postgres\nDB_PORT=5432\nDB_USER=app\n"
                     f"DB_PASSWORD={PASSWORD}\nDB_NAME=appdb\n"},
        app: {"compose.yaml": PINNED % node.hostname},
        late: {"compose.yaml": PINNED % node.hostname}})
    sockets = tmp_path / "engines"
    sockets.mkdir()
    for each in swarm_cluster.nodes:
        (sockets / f"{each.hostname}.sock").symlink_to(each.host.removeprefix("unix://"))
    node_host = {"KOMPOSE_SWARM_NODE_HOST": f"unix://{sockets}/{{hostname}}.sock"}
    try:
        up = run_kompose("-j", "2", f"{db},{app}", "up", "-d", cwd=root)
        assert up.code == 0, up.all
        assert run_kompose(db, "db:export", cwd=root).code == 0
        before = dumps(root / db)

        with engine_stopped(swarm_cluster, node):
            # (a) A stack pinned to the node: not converged, the reason, error hooks only.
            (root / "hooks.log").unlink()
            r = run_kompose(late, "up", "-d", cwd=root)
            assert r.code == 1, r.all
            line = summary(r, late)
            assert "not converged" in line and "app: no suitable node" in line, r.err
            assert "not available for new tasks" in line
            assert hook_log(root) == ["hook_pre_up up -d status=",
                                      "hook_error_up up -d status=failed",
                                      "hook_finally_up up -d status=failed"]
            # (b) Its database: said before any client container starts; no file, no
            # container left.
            r = run_kompose(db, "db:export", cwd=root)
            assert r.code == 1, r.all
            line = summary(r, db)
            assert f"swarm service {db}_postgres has no running task (its last task ran on " \
                   f"node {node.hostname}, which is down), so its database cannot be reached" \
                   in line, r.err
            assert "docker run" not in r.err and "Traceback" not in r.all
            assert PASSWORD not in r.all
            assert dumps(root / db) == before
            assert not clients(swarm_cluster)
            # (c) exec into the task that was there: where it was, and that the node is down.
            r = run_kompose(app, "exec", "-T", "app", "true", cwd=root, env=node_host)
            assert r.code == 1, r.all
            assert f"service {app}_app has no running task (its last task ran on node " \
                   f"{node.hostname}, which is down)" in summary(r, app), r.err

        # (c) The node is up, but its engine does not answer where KOMPOSE_SWARM_NODE_HOST
        # says: the node and that address, not a bare "exit 1".
        # Swarm puts the pinned tasks back by itself once the node is Ready (an `up` right
        # then may still see the scheduler's last "no suitable node" and call it failed).
        wait_for("the pinned services running again", lambda: all(
            running(swarm_cluster, f"{s}_{svc}") for s, svc in
            ((db, "postgres"), (app, "app"), (late, "app"))), limit=180)
        gone = sockets / f"{node.hostname}.sock"
        gone.unlink()
        gone.symlink_to(sockets / "nothing-here.sock")
        r = run_kompose(app, "exec", "-T", "app", "true", cwd=root, env=node_host)
        assert r.code == 1, r.all
        assert f"the task of app runs on node {node.hostname}, whose engine at unix://{gone} " \
               "(KOMPOSE_SWARM_NODE_HOST) does not answer: Cannot connect" in summary(r, app)
        assert "docker exec" not in r.err
        r = run_kompose(app, "top", cwd=root, env=node_host)
        assert r.code == 1, r.all
        assert f"task {app}_app.1 runs on node {node.hostname}, whose engine at unix://{gone} " \
               "(KOMPOSE_SWARM_NODE_HOST) does not answer: Cannot connect" in r.err, r.err
        assert "docker top" not in r.err
        # The node is back with its data: the database answers again, the pinned stack runs.
        exported = run_kompose(db, "db:export", cwd=root)
        assert exported.code == 0, exported.all
        assert len(dumps(root / db)) == len(before) + 2  # a dump and its manifest
        assert run_kompose(late, "up", "-d", cwd=root).code == 0
    finally:
        for stack in (db, app, late):
            swarm_cluster.docker("stack", "rm", stack, check=False)
