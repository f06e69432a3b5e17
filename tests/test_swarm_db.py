"""Database commands against a PostgreSQL service of a swarm stack whose task runs on a worker
the manager's engine cannot `docker exec` into: with nothing configured but the manager,
kompose reaches it with a one-off client container on the stack's network."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Postgres, drop_database, make_stacks, run_kompose
from tests.dbharness import kill_mid_swap, kompose, put_right, wait_for
from tests.swarmfixture import SwarmCluster

PASSWORD = "swarm-pw-" + uuid.uuid4().hex[:8]
PG_STACK = """services:
  postgres:
    image: kompose/postgres:15
    environment:
      POSTGRES_USER: ${DB_USER}
      POSTGRES_PASSWORD: ${DB_PASSWORD}
      POSTGRES_DB: ${DB_NAME}
    volumes: [pgdata:/var/lib/postgresql/data]
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -h 127.0.0.1 -U $$POSTGRES_USER"]
      interval: 1s
      retries: 60
    ports: [{target: 5432, published: %s, mode: host}]
    deploy:
      placement: {constraints: [node.hostname==%s]}
volumes:
  pgdata:
"""
# Published on the worker's own address only (host mode): the tests look at the server from
# the host with psycopg; kompose itself still reaches it through a client container.
PUBLISHED = "5432"


@pytest.fixture(scope="module")
def pg_stack(tmp_path_factory: pytest.TempPathFactory,
             swarm_cluster: SwarmCluster) -> Iterator[tuple[Path, str]]:
    """One PostgreSQL stack, deployed once for this module, its task on the last worker."""
    name = "kpg" + uuid.uuid4().hex[:6]
    worker = swarm_cluster.workers[-1].hostname
    root = make_stacks(tmp_path_factory.mktemp("swarmdb") / "root", {
        ".env": f"KOMPOSE_ORCHESTRATOR=swarm\nKOMPOSE_SWARM_ENDPOINT_MODE=dnsrr\n"
                f"KOMPOSE_SWARM_RESOLVE_IMAGE=never\nDOCKER_HOST={swarm_cluster.manager}\n",
        name: {"compose.yaml": PG_STACK % (PUBLISHED, worker),
               ".env": f"DB_HOST=postgres\nDB_PORT=5432\nDB_USER=app\n"
                       f"DB_PASSWORD={PASSWORD}\nDB_NAME=appdb\n"}})
    try:
        up = run_kompose(name, "up", "-d", cwd=root)
        assert up.code == 0, up.all
        yield root, name
    finally:
        swarm_cluster.docker("stack", "rm", name, check=False)
        for leftover in swarm_cluster.docker("ps", "-aq", "--filter",
                                             "name=kompose-db-").stdout.split():
            swarm_cluster.docker("rm", "-f", leftover, check=False)


def shell(root: Path, name: str, sql: str) -> str:
    r = run_kompose(name, "db:shell", "-c", sql, cwd=root)
    assert r.code == 0, r.all
    assert PASSWORD not in r.all
    return r.out


@pytest.mark.docker
def test_export_import_and_shell_of_a_database_on_a_worker(
        pg_stack: tuple[Path, str], swarm_cluster: SwarmCluster) -> None:
    root, name = pg_stack
    # The task is on the worker: the manager's engine has no container of it.
    assert not swarm_cluster.docker("ps", "-q", "--filter",
                                    f"label=com.docker.stack.namespace={name}").stdout.split()
    listed = run_kompose("--list", name, cwd=root)
    assert f"service:{name}_postgres" in listed.out, listed.all
    shell(root, name, "CREATE TABLE t (x int, b bytea); "
                      "INSERT INTO t SELECT g, sha256(g::text::bytea) "
                      "FROM generate_series(1, 2000) g")
    export = run_kompose(name, "db:export", cwd=root)
    assert export.code == 0, export.all
    assert f"via service {name}_postgres over network {name}_default" in export.err
    assert "-e PGPASSWORD " in export.err and PASSWORD not in export.all
    dumps = sorted((root / name).glob("appdb_*.sql"))
    assert len(dumps) == 1 and "PostgreSQL database dump complete" in dumps[0].read_text()
    before = shell(root, name, "SELECT count(*), md5(string_agg(b::text, '' ORDER BY x)) FROM t")
    shell(root, name, "DELETE FROM t WHERE x > 10")
    imported = run_kompose(name, "db:import", cwd=root)
    assert imported.code == 0, imported.all
    assert PASSWORD not in imported.all
    after = shell(root, name, "SELECT count(*), md5(string_agg(b::text, '' ORDER BY x)) FROM t")
    assert after == before and "2000" in after
    # No scratch or set-aside database is left behind.
    names = shell(root, name, "SELECT string_agg(datname, ',') FROM pg_database")
    assert "kompose" not in names
    listing = run_kompose(name, "db:list", cwd=root)
    assert listing.code == 0 and dumps[0].name in listing.all
    # No client container is left on the manager either.
    assert run_kompose(name, "db:cleanup", "--keep", "1", cwd=root).code == 0
    assert not swarm_cluster.docker("ps", "-aq", "--filter", "name=kompose-db-").stdout.split()


@pytest.mark.docker
def test_an_import_killed_mid_load_is_recovered_from_the_manager(
        pg_stack: tuple[Path, str]) -> None:
    root, name = pg_stack
    folder = root / name
    shell(root, name, "CREATE TABLE IF NOT EXISTS k (x int); INSERT INTO k VALUES (1)")
    assert run_kompose(name, "db:export", cwd=root).code == 0
    dump = sorted(folder.glob("appdb_*.sql"))[-1].read_text()
    cut = dump.index("-- PostgreSQL database dump complete")
    # A dump still loading when kompose dies: its psql sleeps in the scratch database.
    (folder / "sleepy.sql").write_text(dump[:cut] + "SELECT pg_sleep(3600);\n" + dump[cut - 4:])
    proc = subprocess.Popen([sys.executable, "-m", "kompose_py", name, "db:import",
                             str(folder / "sleepy.sql")], cwd=root, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        sleeping = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%'"
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, "the import ended early"
            assert time.monotonic() < deadline, "the import never reached its load step"
            journal = folder / ".kompose-import.json"
            if journal.exists() and json.loads(journal.read_text())["phase"] == "load" \
                    and " 1\n" in shell(root, name, sleeping):
                break
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=60)
    listed = run_kompose("--list", name, cwd=root)
    assert "INTERRUPTED IMPORT" in listed.out, listed.all
    recovered = run_kompose(name, "db:recover", cwd=root)
    assert recovered.code == 0, recovered.all
    assert "dropping the scratch database" in recovered.err
    assert not (folder / ".kompose-import.json").exists()
    names = shell(root, name, "SELECT string_agg(datname, ',') FROM pg_database")
    assert "kompose" not in names and "appdb" in names
    assert "1" in shell(root, name, "SELECT count(*) FROM k")


@pytest.fixture
def worker_pg(pg_stack: tuple[Path, str], swarm_cluster: SwarmCluster) -> Iterator[Postgres]:
    """The stack's server as the host sees it (its port published on the worker's address),
    for the lock-holding sessions and checks; its databases are dropped afterwards."""
    server = Postgres(swarm_cluster.workers[-1].addr, PUBLISHED, "app", PASSWORD, [])
    wait_for("the worker's server answering on its published port", _answers(server))
    yield server
    with server.connect() as conn:
        for name in server.databases():
            if any(name == c or name.startswith(c[:40] + "_kompose_") for c in server.created):
                drop_database(conn, name)


def _answers(server: Postgres) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            return bool(server.databases())
        except Exception:
            return False
    return probe


def clients(cluster: SwarmCluster) -> list[str]:
    return cluster.docker("ps", "-aq", "--filter", "name=kompose-db-").stdout.split()


# Killed at connections-off, and inside the one rename transaction at either rename; the next
# command (a different one each time) puts it right, from the manager.
SWARM_KILLS = [("connections-off", "done", "db:recover"), ("swap", "cut", "db:import"),
               ("swap-second", "done", "db:export")]


@pytest.mark.docker
@pytest.mark.parametrize(("point", "orphan", "next_command"), SWARM_KILLS,
                         ids=[f"{p}-{o}" for p, o, _ in SWARM_KILLS])
def test_sigkill_mid_swap_on_a_worker_is_put_right_from_the_manager(
        tmp_path: Path, pg_stack: tuple[Path, str], worker_pg: Postgres,
        swarm_cluster: SwarmCluster, point: str, orphan: str, next_command: str) -> None:
    deployed, stack = pg_stack
    pg = worker_pg
    name = pg.new_name("ksw")
    pg.create(name, rows=30)
    # The same swarm stack, its .env naming this test's database, in a folder of its own.
    env = (deployed / stack / ".env").read_text().replace("DB_NAME=appdb", f"DB_NAME={name}")
    root = make_stacks(tmp_path / "root", {
        ".env": (deployed / ".env").read_text(),
        stack: {"compose.yaml": (deployed / stack / "compose.yaml").read_text(), ".env": env}})
    exported = kompose(root, stack, "db:export")
    assert exported.code == 0, exported.all
    with pg.connect(name) as conn:
        conn.execute("DELETE FROM items WHERE id > 10")  # the live data: 10 rows, dump: 30
    killed = kill_mid_swap(pg, root, stack, name, point, orphan)
    assert "over network" in Path(f"{killed.logs}.err").read_text()  # a client container
    put_right(pg, root, stack, name, killed, next_command, rows=(10, 30), dumps_before=1)
    # The killed kompose's client container ended with its psql; none of the next's is left.
    assert not clients(swarm_cluster)
