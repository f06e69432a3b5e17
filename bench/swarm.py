"""Swarm figures of the README (Beyond one machine: Swarm), on a throw-away 3-node cluster.

    .venv/bin/python bench/swarm.py            # 3 runs per side (median)
    .venv/bin/python bench/swarm.py --runs 5

- `up -d` of 6 swarm stacks with `-j 1` and `-j 4` (deploy + wait until every service has
  converged) against `docker stack deploy --detach=false` in a loop over the same stack files;
- `--status` over 12 deployed swarm stacks against over 1.

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


def cluster(state: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env.update(KSW_DIR=state, KSW_IMAGES="busybox:latest")
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    state = tempfile.mkdtemp(prefix="kswb-", dir="/tmp")
    work = Path(tempfile.mkdtemp(prefix="kompose-swarm-bench-"))
    try:
        env = {**cluster(state), "PYTHONPATH": str(REPO)}
        root = work / "six"
        names = make_root(root, 6, env["DOCKER_HOST"])
        times: dict[str, list[float]] = {"-j 1": [], "-j 4": [], "loop": []}
        for _ in range(args.runs):
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
        for _ in range(args.runs * 3):
            one.append(timed([*KOMPOSE, "--status", "b00"], twelve, env))
            many.append(timed([*KOMPOSE, "--status", "*"], twelve, env))
        m1, m12 = statistics.median(one), statistics.median(many)
        print(f"--status: 1 stack {m1 * 1000:.0f} ms, 12 stacks {m12 * 1000:.0f} ms; "
              f"ratio {m12 / m1:.2f} (target <= 2)")
    finally:
        subprocess.run([str(SCRIPT), "down"], env={**os.environ, "KSW_DIR": state},
                       capture_output=True, timeout=300)
        subprocess.run(["rm", "-rf", str(work)], check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
