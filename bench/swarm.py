"""Swarm figures of the README (Beyond one machine: Swarm), on a throw-away 3-node cluster.

    .venv/bin/python bench/swarm.py            # 3 runs per side (median)
    .venv/bin/python bench/swarm.py --runs 5
    .venv/bin/python bench/swarm.py --only db  # only the database figure

- `up -d` of 6 swarm stacks with `-j 1` and `-j 4` (deploy + wait until every service has
  converged) against `docker stack deploy --detach=false` in a loop over the same stack files;
- `--status` over 12 deployed swarm stacks against over 1;
- `db:import` of a small database (2000 rows) whose PostgreSQL task runs on a worker (each
  psql/pg_dump in a one-off client container on the manager) and on the manager (`docker
  exec`), 5 runs each (`--db-runs`), and the start of one such client container
  (`docker run --rm` of the server's image on the stack's network, running `true`).

Each round starts from no stack (down, waited for, between rounds, not timed). The cluster is
built by scripts/swarm-cluster.sh in a folder of its own and taken down on exit. Nothing here
is a test: no timing is asserted in tests/.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "swarm-cluster.sh"
KOMPOSE = [sys.executable, "-m", "kompose_py"]
# Valid for both: docker compose (kompose renders it) and docker stack deploy (the loop).
STACK = """services:
  app:
    image: busybox:latest
    init: true
    command: ["sleep", "3600"]
    deploy:
      endpoint_mode: dnsrr
"""


PG_IMAGE = "kompose/postgres:15"
PG_STACK = """services:
  postgres:
    image: %s
    environment: {POSTGRES_USER: app, POSTGRES_PASSWORD: "${DB_PASSWORD}", POSTGRES_DB: appdb}
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -h 127.0.0.1 -U app"]
      interval: 1s
      retries: 60
    deploy:
      endpoint_mode: dnsrr
      placement: {constraints: [node.hostname==%s]}
"""


def cluster(state: str, images: str = "busybox:latest") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env.update(KSW_DIR=state, KSW_IMAGES=images)
    out = subprocess.run([str(SCRIPT), "up", "3"], env=env, capture_output=True, text=True,
                         check=True, timeout=300).stdout
    exports = dict(line[len("export "):].split("=", 1) for line in out.splitlines()
                   if line.startswith("export "))
    return {**env, "DOCKER_HOST": exports["KSW_MANAGER"]}


def make_root(root: Path, count: int, manager: str) -> list[str]:
    root.mkdir(parents=True)
    (root / ".env").write_text(f"KOMPOSE_ORCHESTRATOR=swarm\nKOMPOSE_SWARM_ENDPOINT_MODE=dnsrr\n"
                               f"KOMPOSE_SWARM_RESOLVE_IMAGE=never\nDOCKER_HOST={manager}\n")
    names = [f"b{n:02d}" for n in range(count)]
    for name in names:
        (root / name).mkdir()
        (root / name / "compose.yaml").write_text(STACK)
    return names


def timed(argv: Sequence[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True, timeout=600)
    return time.perf_counter() - start


def down(root: Path, env: dict[str, str], pattern: str = "*") -> None:
    # kompose's down waits until the manager lists nothing of each stack.
    subprocess.run([*KOMPOSE, "-j", "4", pattern, "down"], cwd=root, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)


def loop(root: Path, names: Sequence[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    for name in names:
        subprocess.run(["docker", "stack", "deploy", "--detach=false", "--resolve-image",
                        "never", "-c", str(root / name / "compose.yaml"), name], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                       timeout=600)
    return time.perf_counter() - start


def kompose(root: Path, env: dict[str, str], *args: str) -> str:
    return subprocess.run([*KOMPOSE, *args], cwd=root, env=env, capture_output=True,
                          text=True, check=True, timeout=600).stderr


def db_figure(work: Path, env: dict[str, str], runs: int) -> None:
    """db:import on a worker (client containers) and on the manager (docker exec)."""
    root = work / "db"
    make_root(root, 0, env["DOCKER_HOST"])
    where = {"worker": "ksw-n3", "manager": "ksw-n1"}
    for name, node in where.items():
        (root / name).mkdir()
        (root / name / "compose.yaml").write_text(PG_STACK % (PG_IMAGE, node))
        (root / name / ".env").write_text("DB_HOST=postgres\nDB_PORT=5432\nDB_USER=app\n"
                                          "DB_PASSWORD=bench-pw\nDB_NAME=appdb\n")
    kompose(root, env, "-j", "2", "*", "up", "-d")
    for name in where:
        kompose(root, env, name, "db:shell", "-c",
                "CREATE TABLE t (x int PRIMARY KEY, b bytea); INSERT INTO t SELECT g, "
                "sha256(g::text::bytea) FROM generate_series(1, 2000) g")
        kompose(root, env, name, "db:export")
    times: dict[str, list[float]] = {name: [] for name in where}
    for _ in range(runs):
        for name in where:  # alternately, so that both see the same machine
            times[name].append(timed([*KOMPOSE, name, "db:import"], root, env))
    starts = [timed(["docker", "run", "--rm", "--network", "worker_default", "--log-driver",
                     "none", PG_IMAGE, "true"], root, env) for _ in range(runs)]
    # How many client containers one import starts, from the manager's own event log.
    since = str(int(time.time()))
    kompose(root, env, "worker", "db:import")
    until = str(int(time.time()) + 1)
    started = subprocess.run(["docker", "events", "--since", since, "--until", until,
                              "--filter", "type=container", "--filter", "event=start",
                              "--format", "{{.Actor.Attributes.name}}"], env=env,
                             capture_output=True, text=True, check=True, timeout=60).stdout
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"db:import of a small database (2000 rows), median of {runs}: task on a worker "
          f"{med['worker']:.1f}s (client containers on the manager; runs "
          f"{', '.join(f'{t:.1f}' for t in times['worker'])}), task on the manager "
          f"{med['manager']:.1f}s (docker exec; runs "
          f"{', '.join(f'{t:.1f}' for t in times['manager'])}); one client container start "
          f"{statistics.median(starts):.2f}s; client containers one import starts: "
          f"{sum(n.startswith('kompose-db-') for n in started.split())}")
    kompose(root, env, "-j", "2", "*", "down")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--db-runs", type=int, default=5)
    parser.add_argument("--only", choices=("up", "db"), default=None,
                        help="up: the up -d and --status figures; db: the database figure")
    args = parser.parse_args(argv)
    state = tempfile.mkdtemp(prefix="kswb-", dir="/tmp")
    work = Path(tempfile.mkdtemp(prefix="kompose-swarm-bench-"))
    try:
        images = "busybox:latest" if args.only == "up" else f"busybox:latest {PG_IMAGE}"
        env = {**cluster(state, images), "PYTHONPATH": str(REPO)}
        if args.only != "db":
            up_figures(work, env, args.runs)
        if args.only != "up":
            db_figure(work, env, args.db_runs)
    finally:
        subprocess.run([str(SCRIPT), "down"], env={**os.environ, "KSW_DIR": state},
                       capture_output=True, timeout=300)
        subprocess.run(["rm", "-rf", str(work)], check=False)
    return 0


def up_figures(work: Path, env: dict[str, str], runs: int) -> None:
    root = work / "six"
    names = make_root(root, 6, env["DOCKER_HOST"])
    times: dict[str, list[float]] = {"-j 1": [], "-j 4": [], "loop": []}
    for _ in range(runs):
        times["-j 1"].append(timed([*KOMPOSE, "-j", "1", "*", "up", "-d"], root, env))
        down(root, env)
        times["-j 4"].append(timed([*KOMPOSE, "-j", "4", "*", "up", "-d"], root, env))
        down(root, env)
        times["loop"].append(loop(root, names, env))
        down(root, env)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"up -d, 6 swarm stacks: -j 1 {med['-j 1']:.1f}s, -j 4 {med['-j 4']:.1f}s, "
          f"docker stack deploy --detach=false loop {med['loop']:.1f}s; "
          f"-j 4 / loop = {med['-j 4'] / med['loop']:.2f} (target <= 0.5)")
    twelve = work / "twelve"
    make_root(twelve, 12, env["DOCKER_HOST"])
    subprocess.run([*KOMPOSE, "-j", "4", "*", "up", "-d"], cwd=twelve, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    one, many = [], []
    for _ in range(runs * 3):
        one.append(timed([*KOMPOSE, "--status", "b00"], twelve, env))
        many.append(timed([*KOMPOSE, "--status", "*"], twelve, env))
    m1, m12 = statistics.median(one), statistics.median(many)
    print(f"--status: 1 stack {m1 * 1000:.0f} ms, 12 stacks {m12 * 1000:.0f} ms; "
          f"ratio {m12 / m1:.2f} (target <= 2)")


if __name__ == "__main__":
    raise SystemExit(main())
