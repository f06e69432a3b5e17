"""Issue 19's backup figures, side by side, as medians: export and import per format and
``-j 1/2/4``, sizes and times of gzip, lz4 and zstd, ``db:verify``, container mode, and
kompose's peak memory, on a database shaped like an application's.

    .venv/bin/python bench/backup.py                 # >= 500 MB (pgbench scale 30 + tables)
    .venv/bin/python bench/backup.py --small         # ~20 MB, the whole script in a minute
    .venv/bin/python bench/backup.py --scale 60 --runs 5 --no-container

The database: ``pgbench -i`` (accounts, branches, tellers, history, with its foreign keys)
plus customers, orders and order_lines with secondary indexes (unique, plain, partial), as
an application's schema looks; generated once per scale on the host's server and kept
(``kompose_bench_app``). Each figure runs kompose and its baseline alternately (A B A B ...)
and compares medians; before every timed run the disk is settled (``sync``, ``CHECKPOINT``).
Beside the import targets, a "floor" row: bare tools doing only the server's part of an
import that keeps the old copy until the swap (new database, load, two renames, DROP of the
old copy), in the same alternation: what is left for kompose's own part under each target.
Figures that need options this kompose refuses (``db:export --format custom|directory
--jobs N``, ``--compress lz4|zstd``, ``db:import --jobs N``) print "not available". Nothing
here is a test.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.run import KOMPOSE, PG, Row, docker_ok, peak_rss_run, print_table  # noqa: E402
from tests.conftest import drop_database  # noqa: E402

APP, TARGET, BARE = "kompose_bench_app", "kompose_bench_restore", "kompose_bench_bare"
FLOOR = "kompose_bench_floor"
JOBS = (1, 2, 4)
CTR = {"image": os.environ.get("KOMPOSE_BENCH_BACKUP_IMAGE", "kompose/postgres:17"),
       "name": "kompose-bench-backup-pg", "network": "kompose-bench-backup-net",
       "user": "kompose_bench", "password": "kompose-bench-pw"}
NA = "not available"


# -- measuring ------------------------------------------------------------------------------
class Bench:
    """Runs, alternation, medians, and the peak RSS of every kompose run."""

    def __init__(self, runs: int, container: str | None = None) -> None:
        self.runs = runs
        self.peak_kib = 0
        self.container = container
        self.host_env = {**os.environ, "PGPASSWORD": PG["password"], "NO_COLOR": "1"}

    def settle(self) -> None:
        subprocess.run(["sync"], check=False)
        if os.geteuid() == 0 and shutil.which("runuser"):
            subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-qc", "CHECKPOINT"],
                           capture_output=True, check=False)
        if self.container:
            subprocess.run(["docker", "exec", self.container, "psql", "-X", "-q", "-U",
                            CTR["user"], "-d", "postgres", "-c", "CHECKPOINT"],
                           capture_output=True, check=False)

    def kompose(self, root: Path, *args: str) -> float:
        self.settle()
        elapsed, peak = peak_rss_run([*KOMPOSE, "--root", str(root), *args], self.host_env)
        self.peak_kib = max(self.peak_kib, peak)
        return elapsed

    def command(self, argv: Sequence[str], *, stdin: Path | None = None,
                stdout: Path | None = None, env: dict[str, str] | None = None,
                settle: bool = True) -> float:
        if settle:
            self.settle()
        with contextlib.ExitStack() as files:
            src = files.enter_context(open(stdin, "rb")) if stdin else subprocess.DEVNULL
            out = files.enter_context(open(stdout, "wb")) if stdout else subprocess.DEVNULL
            start = time.perf_counter()
            done = subprocess.run(argv, stdin=src, stdout=out, stderr=subprocess.PIPE,
                                  env=env or self.host_env)
            elapsed = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"{argv[:3]} failed: {done.stderr.decode()[-600:]}")
        return elapsed

    def attempt(self, rows: list[Row], figure: str, sides: dict[str, Callable[[], float]]
                ) -> dict[str, float] | None:
        """:meth:`alternate`, or a failed row saying why (the other figures still run)."""
        try:
            return self.alternate(sides)
        except RuntimeError as exc:
            rows.append(Row(f"{figure} ({why(exc)})", "failed", "-", "-", "-", False))
            return None

    def alternate(self, sides: dict[str, Callable[[], float]]) -> dict[str, float]:
        """Each side once per round, in turn, ``runs`` rounds; the medians."""
        times: dict[str, list[float]] = {name: [] for name in sides}
        for _ in range(self.runs):
            for name, side in sides.items():
                times[name].append(side())
        return {name: statistics.median(values) for name, values in times.items()}


def secs(value: float) -> str:
    return f"{value:.2f} s"


def mib(size: int) -> str:
    return f"{size / 2**20:.1f} MB"


def ratio_row(figure: str, k: float, b: float, target: float | None) -> Row:
    r = k / b
    return Row(figure, secs(k), secs(b), f"{r:.3f}x",
               f"<= {target}x" if target else "(context)", (r <= target) if target else None)


def floor_row(how: str, medians: dict[str, float], base: str, shown: str,
              target: float) -> Row:
    """The floor (side "f", :func:`floor_import`) against a baseline, beside kompose's: what
    the target leaves for kompose once the server's own steps are paid. Context, not a
    target of its own: when the floor is above the target, no import that keeps the old copy
    until the swap meets it on this machine."""
    r = medians["f"] / medians[base]
    return Row(f"  floor (bare tools: new database, {how}, renames, DROP) vs {shown} "
               f"[kompose/floor {medians['k'] / medians['f']:.3f}x]",
               secs(medians["f"]), secs(medians[base]), f"{r:.3f}x",
               f"target {target}x", None)


def why(exc: Exception) -> str:
    """kompose's one summary line out of a failed run's stderr."""
    lines = [x.strip() for x in str(exc).splitlines() if x.strip().startswith("✗")]
    return (lines[-1] if lines else str(exc).splitlines()[-1])[:90]


def na_row(figure: str, target: str = "(context)") -> Row:
    return Row(figure, NA, "-", "-", target, None)


def size_of(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.iterdir())
    return path.stat().st_size


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


# -- the database ----------------------------------------------------------------------------
def connect(dbname: str = "postgres") -> Any:
    import psycopg

    return psycopg.connect(host=PG["host"], port=PG["port"], user=PG["user"],
                           password=PG["password"], dbname=dbname, autocommit=True)


def app_database(scale: int, env: dict[str, str]) -> int:
    """``kompose_bench_app`` at ``scale`` (made once, kept): pgbench's tables plus an
    application's indexed tables of about a fifth of its size. Its size in bytes."""
    marker = f"kompose bench app v2, pgbench scale {scale}"
    with connect() as admin:
        row = admin.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                            "WHERE datname = %s", (APP,)).fetchone()
        if row is None or row[0] != marker:
            print(f"bench: generating {APP} (pgbench scale {scale}) ...", file=sys.stderr,
                  flush=True)
            drop_database(admin, APP)
            admin.execute(f"CREATE DATABASE {APP}")
            subprocess.run(["pgbench", "-i", "-q", "--foreign-keys", "-s", str(scale),
                            "-h", PG["host"], "-p", PG["port"], "-U", PG["user"], APP],
                           env=env, check=True, capture_output=True)
            with connect(APP) as conn:
                n = scale * 2500
                conn.execute(f"""
                    CREATE TABLE customers (id bigint PRIMARY KEY, email text NOT NULL UNIQUE,
                        name text, created timestamptz NOT NULL);
                    INSERT INTO customers SELECT g, 'c' || g || '@example.org', md5(g::text),
                        now() - g * interval '1 minute' FROM generate_series(1, {n}) g;
                    CREATE INDEX customers_created ON customers (created);
                    CREATE TABLE orders (id bigint PRIMARY KEY,
                        customer_id bigint NOT NULL REFERENCES customers,
                        status text NOT NULL, total numeric(12, 2), created timestamptz);
                    INSERT INTO orders SELECT g, 1 + g % {n},
                        (ARRAY['new', 'paid', 'shipped', 'done'])[1 + g % 4],
                        (g % 1000) / 7.0, now() - g * interval '10 seconds'
                        FROM generate_series(1, {n * 4}) g;
                    CREATE INDEX orders_customer ON orders (customer_id);
                    CREATE INDEX orders_created ON orders (created);
                    CREATE INDEX orders_open ON orders (status) WHERE status <> 'done';
                    CREATE TABLE order_lines (order_id bigint REFERENCES orders, line int,
                        sku text, qty int, price numeric(10, 2), PRIMARY KEY (order_id, line));
                    INSERT INTO order_lines SELECT 1 + g / 3, g % 3, 'sku-' || (g % 5000),
                        1 + g % 5, (g % 300) / 3.0 FROM generate_series(0, {n * 12 - 1}) g;
                    CREATE INDEX order_lines_sku ON order_lines (sku);""")
                conn.execute("VACUUM ANALYZE")
            admin.execute(f"COMMENT ON DATABASE {APP} IS '{marker}'")
        return int(admin.execute("SELECT pg_database_size(%s)", (APP,)).fetchone()[0])


def fresh(name: str) -> None:
    """An empty database ``name`` (untimed: a bare restore's baseline starts from one)."""
    with connect() as admin:
        drop_database(admin, name)
        admin.execute(f"CREATE DATABASE {name}")


def into_new(bench: Bench, conn: Sequence[str], argv: Sequence[str]) -> float:
    """A bare restore "into a new database": the database is made for it, from template0 as
    kompose makes its scratch copy, and making it is timed, as it is for kompose. (psql -1 -f,
    today's raw baseline, loads into a database that exists: ``fresh`` makes it untimed.)"""
    with connect() as admin:
        drop_database(admin, BARE)
    return bench.command(["createdb", *conn, "-T", "template0", BARE]) + bench.command(argv)


def floor_import(bench: Bench, load: Callable[[str], float],
                 step: Callable[[str], float], prepare: Callable[[], None]) -> float:
    """The floor of any import that keeps the old copy until the swap, done by bare tools and
    nothing else: create a scratch database, ``load(name)`` into it, rename the target aside
    and the scratch into its place, drop the old copy (timed as kompose is: the DROP counts).
    ``step(sql)`` runs statements ("; " between them) in one bare ``psql`` session, each in
    its own transaction, as CREATE/DROP DATABASE must. Not in it: kompose's start, the dump's
    checks, the target's settings and privileges, the journal, the connections around the
    swap. ``prepare()`` (untimed) leaves ``FLOOR`` loaded, as large as kompose's target, so
    the DROP has as much to drop."""
    prepare()
    bench.settle()
    return (step(f"CREATE DATABASE {FLOOR}_new TEMPLATE template0") + load(f"{FLOOR}_new")
            + step(f"ALTER DATABASE {FLOOR} RENAME TO {FLOOR}_old; "
                   f"ALTER DATABASE {FLOOR}_new RENAME TO {FLOOR}; DROP DATABASE {FLOOR}_old"))


def psql_statements(argv: Sequence[str], statements: str, env: dict[str, str]) -> float:
    """``statements`` (separated by "; ") through ``argv`` (a psql), one ``-c`` each: its
    time."""
    command = list(argv)
    for statement in statements.split("; "):
        command += ["-c", statement]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{statements!r}: {done.stderr.strip()}")
    return time.perf_counter() - start


def host_floor(bench: Bench, conn: Sequence[str], load: Callable[[str], list[str]],
               plain: Path, tuned: bool = False) -> float:
    """:func:`floor_import` on the host's server; ``load(database)``: the bare load's argv.
    ``tuned``: with the ``backend_flush_after`` kompose gives pg_restore's sessions (it
    makes the DROP's checkpoint cheaper), so that the floor is what kompose could reach."""
    def step(statements: str) -> float:
        return psql_statements(["psql", *conn, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d",
                                "postgres"], statements, bench.host_env)

    def prepare() -> None:
        with connect() as admin:
            for name in (f"{FLOOR}_new", f"{FLOOR}_old"):
                drop_database(admin, name)
            if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                             (FLOOR,)).fetchone() is None:
                admin.execute(f"CREATE DATABASE {FLOOR} TEMPLATE template0")
                bench.command(["psql", *conn, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-d",
                               FLOOR, "-f", str(plain)])

    env = {**bench.host_env, "PGOPTIONS": "-c backend_flush_after=256"} if tuned else None
    return floor_import(bench, lambda name: bench.command(load(name), settle=False, env=env),
                        step, prepare)


# -- the kompose root ------------------------------------------------------------------------
def make_root(root: Path, extra: str = "") -> None:
    base = (f"DB_HOST={PG['host']}\nDB_PORT={PG['port']}\nDB_USER={PG['user']}\n"
            f"DB_PASSWORD={PG['password']}\n{extra}")
    for stack, db in (("app", APP), ("restore", TARGET)):
        (root / stack).mkdir(parents=True)
        (root / stack / "compose.yaml").write_text("services: {}\n")
        (root / stack / ".env").write_text(f"DB_NAME={db}\n{base}")


def accepted(root: Path, *args: str) -> bool:
    """Whether this kompose takes these options (a dry-run; 2 is a usage error)."""
    done = subprocess.run([*KOMPOSE, "--root", str(root), "-n", *args], capture_output=True,
                          env={**os.environ, "NO_COLOR": "1"})
    return done.returncode != 2


def newest_dump(folder: Path, before: set[Path]) -> Path:
    made = [p for p in folder.iterdir() if p not in before and not p.name.startswith(".")
            and not p.name.endswith(".json")]
    if len(made) != 1:
        raise RuntimeError(f"expected one new dump in {folder}, found {made}")
    return made[0]


# -- the figures -----------------------------------------------------------------------------
EXPORTS: list[tuple[str, list[str], list[str] | None]] = [
    # name, kompose's options, the bare pg_dump's (None: no direct equivalent)
    ("plain", [], ["-Fp"]),
    ("plain, gzip", ["--compress", "gzip"], ["-Fp", "-Z", "6"]),
    ("plain, lz4", ["--compress", "lz4"], None),
    ("plain, zstd", ["--compress", "zstd"], None),
    ("custom", ["--format", "custom"], ["-Fc"]),
    ("custom, lz4", ["--format", "custom", "--compress", "lz4"], None),
    ("custom, zstd", ["--format", "custom", "--compress", "zstd"], None),
    *[(f"directory -j {n}", ["--format", "directory", "--jobs", str(n)], ["-Fd", "-j", str(n)])
      for n in JOBS],
]


def exports(bench: Bench, root: Path, work: Path) -> tuple[list[Row], dict[str, Path]]:
    """Export per format; keeps one dump of each for the imports."""
    rows: list[Row] = []
    kept: dict[str, Path] = {}
    folder = root / "app"
    conn = ["-h", PG["host"], "-p", PG["port"], "-U", PG["user"], "--no-password"]
    for name, options, bare in EXPORTS:
        figure = f"db:export {name}"
        if not accepted(root, "app", "db:export", *options):
            rows.append(na_row(figure + " (options refused)"))
            continue
        made: list[Path] = []

        def via_kompose(options: list[str] = options, made: list[Path] = made) -> float:
            for old in made:
                remove(old)
                Path(f"{old}.json").unlink(missing_ok=True)
            made.clear()
            before = set(folder.iterdir())
            elapsed = bench.kompose(root, "app", "db:export", *options)
            made.append(newest_dump(folder, before))
            return elapsed

        out = work / f"bare-{len(kept)}"

        def bare_dump(bare: list[str] | None = bare, out: Path = out) -> float:
            remove(out)
            assert bare is not None
            if bare[0] == "-Fp" and "-Z" not in bare:
                return bench.command(["pg_dump", *conn, *bare, "-d", APP], stdout=out)
            return bench.command(["pg_dump", *conn, *bare, "-f", str(out), "-d", APP])

        sides = {"k": via_kompose, **({"b": bare_dump} if bare else {})}
        try:
            medians = bench.alternate(sides)
        except RuntimeError as exc:  # refused when it runs (pg_dump 15 and lz4 in an archive)
            rows.append(na_row(f"{figure} ({why(exc)})"))
            continue
        (dump,) = made
        kept[name] = dump
        if bare:
            row = ratio_row(f"{figure} vs pg_dump {' '.join(bare)}", medians["k"],
                            medians["b"], None)
            row.figure += f"  [{mib(size_of(dump))} vs {mib(size_of(out))}]"
            rows.append(row)
            remove(out)
        else:
            rows.append(Row(f"{figure}  [{mib(size_of(dump))}]", secs(medians["k"]), "-", "-",
                            "(context)", None))
    return rows, kept


def imports(bench: Bench, root: Path, dumps: dict[str, Path]) -> tuple[list[Row], float | None]:
    """Import per format and -j, against psql -1 -f of the plain dump and a bare
    pg_restore -j N into a new database; the median of psql -1 -f."""
    rows: list[Row] = []
    conn = ["-h", PG["host"], "-p", PG["port"], "-U", PG["user"], "--no-password"]
    plain = dumps.get("plain")
    if plain is None:
        return [na_row("db:import (no plain dump)")], None

    def kompose_import(dump: Path, *options: str) -> Callable[[], float]:
        return lambda: bench.kompose(root, "restore", "db:import", str(dump), *options)

    def psql_into(database: str) -> list[str]:
        return ["psql", *conn, "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction",
                "-d", database, "-f", str(plain)]

    def psql_f() -> float:
        fresh(BARE)
        return bench.command(psql_into(BARE))

    medians = bench.attempt(rows, "db:import plain (host)", {
        "k": kompose_import(plain), "p": psql_f,
        "f": lambda: host_floor(bench, conn, psql_into, plain)})
    if medians is None:
        return rows, None
    psql_median = medians["p"]
    rows.append(ratio_row("db:import plain (host) vs psql -1 -f", medians["k"], psql_median,
                          1.15))
    rows.append(floor_row("psql -1 -f", medians, "p", "psql -1 -f", 1.15))
    for name in ("plain, gzip", "plain, lz4", "plain, zstd"):
        if name in dumps:
            got = bench.attempt(rows, f"db:import {name}", {"k": kompose_import(dumps[name])})
            if got is None:
                continue
            k = got["k"]
            rows.append(ratio_row(f"db:import {name} vs psql -1 -f of the plain dump", k,
                                  psql_median, None))
    for fmt in ("custom", "directory"):
        for n in JOBS:
            dump = dumps.get(fmt) if fmt == "custom" else dumps.get(f"directory -j {n}")
            figure = f"db:import {fmt} --jobs {n}"
            if dump is None or not accepted(root, "restore", "db:import", str(dump),
                                            "--jobs", str(n)):
                rows.append(na_row(figure, "<= 0.9x psql -1 -f, <= 1.1x pg_restore"
                                   if n == 2 else "(context)"))
                continue

            def bare_restore(dump: Path = dump, n: int = n) -> float:
                return into_new(bench, conn, ["pg_restore", *conn, "-j", str(n), "-d", BARE,
                                              str(dump)])

            sides = {"k": kompose_import(dump, "--jobs", str(n)), "r": bare_restore}
            if n == 2:
                sides["p"] = psql_f
                sides["f"] = lambda dump=dump: host_floor(
                    bench, conn, lambda name: ["pg_restore", *conn, "-j", "2", "-d", name,
                                               str(dump)], plain, tuned=True)
            got = bench.attempt(rows, figure, sides)
            if got is None:
                continue
            m = got
            if n == 2:
                rows.append(ratio_row(f"{figure} vs psql -1 -f of the plain dump", m["k"],
                                      m["p"], 0.9))
            rows.append(ratio_row(f"{figure} vs bare pg_restore -j {n} into a new database",
                                  m["k"], m["r"], 1.1 if n == 2 else None))
            if n == 2:
                how = f"pg_restore -j 2 of the {fmt} archive"
                rows.append(floor_row(how, m, "r", "bare pg_restore -j 2", 1.1))
                rows.append(floor_row(how, m, "p", "psql -1 -f", 0.9))
    return rows, psql_median


def verifies(bench: Bench, root: Path, dumps: dict[str, Path]) -> list[Row]:
    rows: list[Row] = []
    conn = ["-h", PG["host"], "-p", PG["port"], "-U", PG["user"], "--no-password"]
    if not accepted(root, "app", "db:verify"):
        return [na_row("db:verify (command refused)", "<= 1.2x")]
    if "plain" in dumps:
        plain = dumps["plain"]

        def psql_f() -> float:
            return into_new(bench, conn, ["psql", *conn, "-X", "-q", "-v", "ON_ERROR_STOP=1",
                                          "--single-transaction", "-d", BARE, "-f", str(plain)])

        got = bench.attempt(rows, "db:verify plain", {
            "k": lambda: bench.kompose(root, "app", "db:verify", str(plain)), "b": psql_f})
        if got is not None:
            rows.append(ratio_row("db:verify plain vs psql -1 -f into a new database",
                                  got["k"], got["b"], 1.2))
    custom = dumps.get("custom")
    if custom is None:
        rows.append(na_row("db:verify custom vs bare pg_restore", "<= 1.2x"))
        return rows
    jobs = str(min(os.cpu_count() or 1, 4))  # the import's default -j

    def bare_restore() -> float:
        return into_new(bench, conn, ["pg_restore", *conn, "-j", jobs, "-d", BARE, str(custom)])

    got = bench.attempt(rows, "db:verify custom", {
        "k": lambda: bench.kompose(root, "app", "db:verify", str(custom), "--jobs", jobs),
        "b": bare_restore})
    if got is None:
        return rows
    m = got
    rows.append(ratio_row(f"db:verify custom vs bare pg_restore -j {jobs} into a new database",
                          m["k"], m["b"], 1.2))
    return rows


# -- container mode ----------------------------------------------------------------------------
def ctr_psql(statement: str, database: str = "postgres") -> None:
    done = subprocess.run(["docker", "exec", CTR["name"], "psql", "-X", "-q", "-v",
                           "ON_ERROR_STOP=1", "-U", CTR["user"], "-d", database, "-c",
                           statement], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{statement!r}: {done.stderr.strip()}")


def container_up(env: dict[str, str]) -> list[list[str]]:
    """The server in a container, with the app database loaded (untimed); what removes it."""
    made: list[list[str]] = []
    subprocess.run(["docker", "network", "create", CTR["network"]], check=True,
                   capture_output=True)
    made.append(["network", "rm", CTR["network"]])
    subprocess.run(["docker", "run", "-d", "--name", CTR["name"], "--network", CTR["network"],
                    "-e", f"POSTGRES_USER={CTR['user']}", "-e", "POSTGRES_PASSWORD",
                    CTR["image"]], check=True, capture_output=True,
                   env={**os.environ, "POSTGRES_PASSWORD": CTR["password"]})
    made.insert(0, ["rm", "-f", "-v", CTR["name"]])
    probe = ["docker", "exec", "-e", "PGPASSWORD", CTR["name"], "psql", "-X", "-q",
             "--no-password", "-h", "localhost", "-U", CTR["user"], "-d", "postgres", "-c",
             "SELECT 1"]
    deadline = time.monotonic() + 120
    while subprocess.run(probe, capture_output=True,
                         env={**os.environ, "PGPASSWORD": CTR["password"]}).returncode:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{CTR['image']} did not start")
        time.sleep(0.3)
    print(f"bench: loading {APP} into {CTR['name']} ...", file=sys.stderr, flush=True)
    for name in (APP, TARGET):
        ctr_psql(f"CREATE DATABASE {name}")
    dump = subprocess.Popen(["pg_dump", "-h", PG["host"], "-p", PG["port"], "-U", PG["user"],
                             "--no-password", "--no-owner", "--no-privileges", "-d", APP],
                            stdout=subprocess.PIPE, env=env)
    load = subprocess.run(["docker", "exec", "-i", CTR["name"], "psql", "-X", "-q", "-v",
                           "ON_ERROR_STOP=1", "-U", CTR["user"], "-d", APP],
                          stdin=dump.stdout, capture_output=True)
    assert dump.stdout is not None
    dump.stdout.close()
    if dump.wait() != 0 or load.returncode != 0:
        raise RuntimeError(f"loading {APP} failed: {load.stderr.decode()[-600:]}")
    ctr_psql("VACUUM ANALYZE", APP)
    return made


def container_figures(bench: Bench, work: Path) -> list[Row]:
    env = {**os.environ, "PGPASSWORD": CTR["password"], "NO_COLOR": "1"}
    root = work / "ctr-root"
    make_root(root)
    for stack in ("app", "restore"):
        text = (root / stack / ".env").read_text().splitlines()
        db = text[0]
        (root / stack / ".env").write_text(
            f"{db}\nDB_HOST=localhost\nDB_PORT=5432\nDB_USER={CTR['user']}\n"
            f"DB_PASSWORD={CTR['password']}\nDB_ACCESS=container\n"
            f"DB_CONTAINER={CTR['name']}\n")
    bench.container = CTR["name"]
    bench.host_env = env
    conn = ["-e", "PGPASSWORD", CTR["name"]]
    pg = ["--no-password", "-h", "localhost", "-U", CTR["user"]]
    rows: list[Row] = []
    folder = root / "app"
    before = set(folder.iterdir())
    bench.kompose(root, "app", "db:export")
    plain = newest_dump(folder, before)
    bare_out = work / "ctr-bare.sql"
    m = bench.alternate({
        "k": lambda: bench.kompose(root, "app", "db:export"),
        "b": lambda: bench.command(["docker", "exec", *conn, "pg_dump", *pg, "-d", APP],
                                   stdout=bare_out, env=env)})
    rows.append(ratio_row("container: db:export plain vs docker exec CTR pg_dump > file",
                          m["k"], m["b"], None))
    for extra in folder.glob(f"{APP}_*"):  # the timed exports' dumps and manifests
        if extra not in (plain, Path(f"{plain}.json")):
            remove(extra)

    def docker_psql() -> float:
        ctr_psql(f"DROP DATABASE IF EXISTS {BARE} WITH (FORCE)")
        ctr_psql(f"CREATE DATABASE {BARE}")
        return bench.command(["docker", "exec", "-i", *conn, "psql", *pg, "-X", "-q", "-v",
                              "ON_ERROR_STOP=1", "--single-transaction", "-d", BARE],
                             stdin=plain, env=env)

    def load(database: str) -> float:
        return bench.command(["docker", "exec", "-i", *conn, "psql", *pg, "-X", "-q", "-v",
                              "ON_ERROR_STOP=1", "--single-transaction", "-d", database],
                             stdin=plain, env=env, settle=False)

    def prepare() -> None:
        for name in (f"{FLOOR}_new", f"{FLOOR}_old"):
            ctr_psql(f"DROP DATABASE IF EXISTS {name}")
        probe = subprocess.run(["docker", "exec", CTR["name"], "psql", "-X", "-Atq", "-U",
                                CTR["user"], "-d", "postgres", "-c",
                                f"SELECT 1 FROM pg_database WHERE datname = '{FLOOR}'"],
                               capture_output=True, text=True)
        if not probe.stdout.strip():
            ctr_psql(f"CREATE DATABASE {FLOOR}")
            load(FLOOR)

    def ctr_floor() -> float:
        return floor_import(bench, load, lambda statements: psql_statements(
            ["docker", "exec", *conn, "psql", *pg, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d",
             "postgres"], statements, env), prepare)

    m = bench.alternate({
        "k": lambda: bench.kompose(root, "restore", "db:import", str(plain)),
        "b": docker_psql, "f": ctr_floor})
    rows.append(ratio_row("container: db:import plain vs docker exec -i CTR psql -1 < file",
                          m["k"], m["b"], 1.2))
    rows.append(floor_row("docker exec psql -1", m, "b",
                          "docker exec -i CTR psql -1 < file", 1.2))
    if accepted(root, "app", "db:verify"):
        k = bench.alternate({"k": lambda: bench.kompose(root, "app", "db:verify",
                                                        str(plain))})["k"]
        rows.append(ratio_row("container: db:verify plain vs docker exec -i CTR psql -1 < file",
                              k, m["b"], None))
    for method in ("gzip", "lz4", "zstd"):  # pg_dump 16+ in the container: its own methods
        options = ["--format", "custom", "--compress", method]
        out = work / f"ctr-bare-{method}.dump"
        before = set(folder.iterdir())
        try:
            m = bench.alternate({
                "k": lambda options=options: bench.kompose(root, "app", "db:export", *options),
                "b": lambda method=method, out=out: bench.command(
                    ["docker", "exec", *conn, "pg_dump", *pg, "-Fc", f"--compress={method}",
                     "-d", APP], stdout=out, env=env)})
        except RuntimeError as exc:
            rows.append(na_row(f"container: db:export custom, {method} ({why(exc)})"))
            continue
        made = sorted(p for p in folder.iterdir() if p not in before
                      and not p.name.endswith(".json"))
        size = size_of(made[-1]) if made else 0
        row = ratio_row(f"container: db:export custom, {method} vs docker exec pg_dump -Fc",
                        m["k"], m["b"], None)
        row.figure += f"  [{mib(size)} vs {mib(size_of(out))}]"
        rows.append(row)
        for extra in made:
            remove(extra)
            Path(f"{extra}.json").unlink(missing_ok=True)
        remove(out)
    if accepted(root, "app", "db:export", "--format", "custom"):
        before = set(folder.iterdir())
        bench.kompose(root, "app", "db:export", "--format", "custom")
        custom = newest_dump(folder, before)
        for n in JOBS:
            figure = f"container: db:import custom --jobs {n} vs docker exec -i CTR pg_restore"
            if not accepted(root, "restore", "db:import", str(custom), "--jobs", str(n)):
                rows.append(na_row(figure))
                continue

            def docker_restore() -> float:
                ctr_psql(f"DROP DATABASE IF EXISTS {BARE} WITH (FORCE)")
                ctr_psql(f"CREATE DATABASE {BARE}")
                return bench.command(["docker", "exec", "-i", *conn, "pg_restore", *pg,
                                      "-d", BARE], stdin=custom, env=env)

            m = bench.alternate({
                "k": lambda n=n: bench.kompose(root, "restore", "db:import", str(custom),
                                               "--jobs", str(n)),
                "b": docker_restore})
            rows.append(ratio_row(figure, m["k"], m["b"], None))
    else:
        rows.append(na_row("container: db:import custom --jobs N"))
    return rows


def _exit_on_term(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # run the finally blocks: the container goes too


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, default=30,
                        help="pgbench scale of the database (30: about 550 MB in all)")
    parser.add_argument("--small", action="store_true",
                        help="scale 1 (about 25 MB), 1 run per side: the script end to end")
    parser.add_argument("--runs", type=int, default=None,
                        help="runs per side, median (default 3; --small: 1)")
    parser.add_argument("--no-container", action="store_true",
                        help="leave out the container-mode figures")
    args = parser.parse_args(argv)
    scale = 1 if args.small else args.scale
    runs = args.runs or (1 if args.small else 3)
    bench = Bench(runs)
    started = time.monotonic()
    size = app_database(scale, bench.host_env)
    rows = [Row(f"database: pgbench scale {scale} + indexed application tables",
                mib(size), "-", "-", ">= 500 MB" if not args.small else "(small)",
                None if args.small else size >= 500 * 2**20)]
    previous = signal.signal(signal.SIGTERM, _exit_on_term)
    made: list[list[str]] = []
    try:
        with tempfile.TemporaryDirectory(dir=REPO / "bench") as tmp:
            work = Path(tmp)
            root = work / "root"
            make_root(root)
            print("bench: exports ...", file=sys.stderr, flush=True)
            export_rows, dumps = exports(bench, root, work)
            rows += export_rows
            print("bench: imports ...", file=sys.stderr, flush=True)
            import_rows, _ = imports(bench, root, dumps)
            rows += import_rows
            print("bench: verify ...", file=sys.stderr, flush=True)
            rows += verifies(bench, root, dumps)
            host_peak = bench.peak_kib
            if not args.no_container and shutil.which("docker") and \
                    docker_ok("image", "inspect", CTR["image"]):
                print("bench: container mode ...", file=sys.stderr, flush=True)
                made = container_up(bench.host_env)
                try:
                    rows += container_figures(bench, work)
                except RuntimeError as exc:
                    rows.append(Row(f"container mode ({why(exc)})", "failed", "-", "-", "-",
                                    False))
            elif not args.no_container:
                rows.append(na_row(f"container mode (no Docker or no {CTR['image']})"))
            rows.append(Row("kompose peak RSS, every run above (host / all)",
                            f"{host_peak / 1024:.1f} MB / {bench.peak_kib / 1024:.1f} MB",
                            "-", "-", "< 80 MB", bench.peak_kib < 80 * 1024))
    finally:
        for argv_ in made:
            subprocess.run(["docker", *argv_], capture_output=True, check=False)
        with connect() as admin:
            for name in (TARGET, BARE, FLOOR, f"{FLOOR}_new", f"{FLOOR}_old"):
                drop_database(admin, name)
        signal.signal(signal.SIGTERM, previous)
    print_table(rows)
    print(f"({runs} run(s) per side, medians; {time.monotonic() - started:.0f} s in all)",
          file=sys.stderr)
    return 0 if all(r.ok is not False for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
