"""Every measurement of SPEC.md §10 that exists, side by side, as a table of medians.

    .venv/bin/python bench/run.py              # everything available here
    .venv/bin/python bench/run.py --only startup,hook --runs 15

Each figure runs kompose and its baseline alternately (A B A B ...) so machine noise hits both
alike, then compares medians. Figures that need Docker or PostgreSQL say so when those are
missing. Nothing here is a test: no timing is asserted anywhere in tests/.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
KOMPOSE = [PY, "-m", "kompose_py"]


@dataclass
class Row:
    figure: str
    kompose: str
    baseline: str
    ratio: str
    target: str
    ok: bool | None  # None: not measured


def timed(argv: Sequence[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=True)
    return time.perf_counter() - start


def side_by_side(a: Callable[[], float], b: Callable[[], float], runs: int,
                 warmup: int = 1) -> tuple[float, float]:
    for _ in range(warmup):
        a()
        b()
    ta, tb = [], []
    for _ in range(runs):
        ta.append(a())
        tb.append(b())
    return statistics.median(ta), statistics.median(tb)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def make_tree(root: Path, count: int, hooks: bool = True) -> None:
    for i in range(count):
        d = root / f"stack{i:02d}"
        d.mkdir(parents=True)
        (d / "compose.yaml").write_text("services:\n  app:\n    image: busybox:latest\n")
        (d / ".env").write_text(f"COMPOSE_PROJECT_NAME=bench{i}\nDB_PASSWORD=pw{i}\nX=${{HOME}}\n")
        if hooks:
            (d / "hooks.sh").write_text(
                "hook_pre_up() { echo pre; }\nhook_post_up() { echo post; }\n"
                "hook_finally_up() { :; }\n")


# -- figures --------------------------------------------------------------------------------
def startup(runs: int) -> list[Row]:
    rows = []
    env = {**os.environ, "NO_COLOR": "1"}
    floor = [PY, "-c", "import typer"]
    with tempfile.TemporaryDirectory() as tmp:
        one, fifty = Path(tmp) / "one", Path(tmp) / "fifty"
        make_tree(one, 1)
        make_tree(fifty, 50)
        version, base = side_by_side(lambda: timed([*KOMPOSE, "--version"], env=env),
                                     lambda: timed(floor, env=env), runs)
        rows.append(Row("kompose --version vs import typer", ms(version), ms(base),
                        f"{version / base:.2f}x", "<= 2x", version / base <= 2))
        dry1, base = side_by_side(
            lambda: timed([*KOMPOSE, "--root", str(one), "-n", "*", "up", "-d"], env=env),
            lambda: timed(floor, env=env), runs)
        rows.append(Row("dry-run, 1 stack vs import typer", ms(dry1), ms(base),
                        f"{dry1 / base:.2f}x", "<= 2x", dry1 / base <= 2))
        dry50, dry1 = side_by_side(
            lambda: timed([*KOMPOSE, "--root", str(fifty), "-n", "*", "up", "-d"], env=env),
            lambda: timed([*KOMPOSE, "--root", str(one), "-n", "*", "up", "-d"], env=env), runs)
        rows.append(Row("dry-run, 50 stacks vs 1 stack", ms(dry50), ms(dry1),
                        f"{dry50 / dry1:.2f}x", "<= 2x", dry50 / dry1 <= 2))
    return rows


FIGURES: dict[str, Callable[[int], list[Row]]] = {"startup": startup}


def have_docker() -> bool:
    return shutil.which("docker") is not None and subprocess.run(
        ["docker", "compose", "version"], capture_output=True).returncode == 0 and \
        subprocess.run(["docker", "image", "inspect", "busybox:latest"],
                       capture_output=True).returncode == 0


def print_table(rows: list[Row]) -> None:
    head = ("figure", "kompose", "baseline", "ratio", "target", "result")
    cells = [head] + [(r.figure, r.kompose, r.baseline, r.ratio, r.target,
                       "-" if r.ok is None else ("pass" if r.ok else "FAIL")) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    for n, c in enumerate(cells):
        print("| " + " | ".join(x.ljust(widths[i]) for i, x in enumerate(c)) + " |")
        if n == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated: " + ", ".join(FIGURES))
    parser.add_argument("--runs", type=int, default=11, help="runs per side (median)")
    args = parser.parse_args(argv)
    chosen = [n for n in FIGURES if not args.only or n in args.only.split(",")]
    rows: list[Row] = []
    for name in chosen:
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        rows.extend(FIGURES[name](args.runs))
    print_table(rows)
    return 0 if all(r.ok is not False for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
