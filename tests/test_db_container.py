"""Databases where they live: PostgreSQL in a container of one stack, reached by the other
stacks as ``DB_HOST=postgres`` over a shared external network, as real kompose roots keep it;
and a server newer than the host's pg_dump behind a published port."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from kompose_py.db.postgres.tools import CONNECT_TIMEOUT
from tests.conftest import (
    PG_IMAGE,
    PG_IMAGE_NEWER,
    _image_there,
    _missing,
    drop_database,
    make_stacks,
    run_kompose,
    start_pg_container,
    stop_pg_container,
)

HOOKS = r"""
hook_pre_db_import() { echo "pre:$1:$KOMPOSE_DUMP_FILE" >>"$HOOK_LOG"; }
hook_post_db_import() { echo "post:$1:$KOMPOSE_DUMP_FILE" >>"$HOOK_LOG"; }
hook_post_db_export() { echo "export:$1:$KOMPOSE_DUMP_FILE" >>"$HOOK_LOG"; }
"""


@pytest.fixture
def shared_root(tmp_path: Path, docker_engine: None) -> Iterator[tuple[Path, str]]:
    """A kompose root as users keep it: the root .env holds DB_HOST=postgres and the real
    password, stack `pg` runs PostgreSQL on an external network, stack `shop` names its
    database."""
    if not _image_there(PG_IMAGE):
        _missing(f"the PostgreSQL image {PG_IMAGE} (run scripts/setup-env.sh)")
    tag = uuid.uuid4().hex[:8]
    network = f"kt-shared-{tag}"
    secret = f"Pg-{tag}-Secret"
    subprocess.run(["docker", "network", "create", network], check=True, capture_output=True)
    root = make_stacks(tmp_path / "root", {
        ".env": f"DB_HOST=postgres\nDB_USER=app\nDB_PASSWORD={secret}\nNETWORK_NAME={network}\n",
        "pg": {".env": f"COMPOSE_PROJECT_NAME=kt-pg-{tag}\n",
               "compose.yaml": f"""services:
  postgres:
    image: {PG_IMAGE}
    environment:
      POSTGRES_USER: ${{DB_USER}}
      POSTGRES_PASSWORD: ${{DB_PASSWORD}}
      POSTGRES_DB: shopdb
    healthcheck:
      test: ["CMD", "pg_isready", "-U", "app", "-d", "shopdb"]
      interval: 1s
      retries: 60
    networks: [shared]
networks:
  shared:
    name: ${{NETWORK_NAME}}
    external: true
"""},
        "shop": {".env": f"COMPOSE_PROJECT_NAME=kt-shop-{tag}\nDB_NAME=shopdb\n"
                         "DB_USER=placeholder\n",
                 "hooks.sh": HOOKS,
                 "compose.yaml": """services:
  app:
    image: busybox:latest
    init: true
    command: ["sh", "-c", "while :; do sleep 3600; done"]
    networks: [shared]
networks:
  shared:
    name: ${NETWORK_NAME}
    external: true
"""},
    })
    try:
        yield root, secret
    finally:
        for project in (f"kt-pg-{tag}", f"kt-shop-{tag}"):
            subprocess.run(["docker", "compose", "-p", project, "down", "-v", "-t", "1"],
                           capture_output=True)
        subprocess.run(["docker", "network", "rm", network], capture_output=True)


def test_database_in_another_stacks_container_reached_as_db_host(
        shared_root: tuple[Path, str], tmp_path: Path) -> None:
    root, secret = shared_root
    log = tmp_path / "hooks.log"
    env = {"HOOK_LOG": str(log)}

    def kompose(*args: str) -> subprocess.CompletedProcess[str]:
        r = run_kompose("--root", str(root), *args, env=env)
        assert secret not in r.out + r.err  # never printed, whatever happens
        return r  # type: ignore[return-value]

    r = kompose("*", "up", "-d", "--wait")
    assert r.code == 0, r.err
    # The host cannot resolve "postgres": only the container path can work.
    r = kompose("shop", "db:shell", "-c",
                "CREATE TABLE items (id int PRIMARY KEY, label text);"
                "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 50) g;")
    assert r.code == 0, r.err
    listing = kompose("--list").out
    shop_line = next(x for x in listing.splitlines() if x.startswith("shop "))
    assert "container:kt-pg-" in shop_line and "postgres-1" in shop_line, listing
    plan = kompose("-n", "shop", "db:export")
    assert plan.code == 0
    assert "answers to DB_HOST=postgres" in plan.err
    assert ("docker exec -e PGPASSWORD -e PGCONNECT_TIMEOUT=10 -e KOMPOSE_EXEC_MARK kt-pg-"
            in plan.err)
    assert "pg_dump --no-password -h localhost -p 5432 -U app" in plan.err
    assert not list((root / "shop").glob("shopdb_*"))
    r = kompose("shop", "db:export")
    assert r.code == 0, r.err
    (dump,) = (root / "shop").glob("shopdb_*Z.sql")
    assert "CREATE TABLE public.items" in dump.read_text()
    r = kompose("shop", "db:shell", "-c", "DELETE FROM items WHERE id > 3")
    assert r.code == 0, r.err
    r = kompose("shop", "db:import")
    assert r.code == 0, r.err
    count = kompose("shop", "db:shell", "-At", "-c", "SELECT count(*) FROM items")
    assert count.out.strip() == "50", count.err
    # The hooks see the dump from the start of an import (KOMPOSE_DUMP_FILE).
    assert log.read_text().splitlines() == [
        f"export:{dump}:{dump}", f"pre:{dump}:{dump}", f"post:{dump}:{dump}"]
    assert "shopdb_" in kompose("shop", "db:list").out
    # A wrong password (-e beats the root .env): one clear line, nothing left.
    r = kompose("-e", "DB_PASSWORD=Wrong-Pw-1", "shop", "db:export")
    assert r.code == 1
    assert "cannot connect to app in container kt-pg-" in r.err
    assert "password authentication failed" in r.err and "Wrong-Pw-1" not in r.err
    assert len(list((root / "shop").glob("shopdb_*Z.sql"))) == 1
    assert not [p for p in (root / "shop").iterdir() if p.name.endswith(".partial")]


@pytest.fixture
def newer_server(docker_engine: None) -> Iterator[object]:
    if not _image_there(PG_IMAGE_NEWER):
        _missing(f"the PostgreSQL image {PG_IMAGE_NEWER} (run scripts/setup-env.sh)")
    server = start_pg_container(PG_IMAGE_NEWER, uuid.uuid4().hex[:6], publish="0.0.0.0::5432")
    yield server
    stop_pg_container(server)


def test_server_newer_than_the_hosts_pg_dump(newer_server: object, tmp_path: Path) -> None:
    from tests.conftest import ContainerPostgres

    assert isinstance(newer_server, ContainerPostgres)
    server = newer_server
    name = server.new_name()
    server.create(name, rows=9)
    host_pg_dump = subprocess.run(["pg_dump", "--version"], capture_output=True,
                                  text=True).stdout.split()[2]
    root = make_stacks(tmp_path / "root", {"shop": {
        "compose.yaml": "services:\n  app:\n    image: busybox:latest\n",
        # 127.0.0.2: a name that reaches the published port but is not "localhost".
        ".env": f"DB_NAME={name}\nDB_HOST=127.0.0.2\nDB_PORT={server.port}\n"
                f"DB_USER={server.user}\nDB_PASSWORD={server.password}\n"}})
    # Forced onto the host's tools: the mismatch is said, with what to set.
    r = run_kompose("--root", str(root), "-e", "DB_ACCESS=host", "shop", "db:export")
    assert r.code == 1
    assert f"pg_dump is {host_pg_dump}" in r.err and "server is PostgreSQL 17." in r.err
    assert "set DB_CONTAINER" in r.err
    assert not list((root / "shop").glob(f"{name}_*"))
    # auto: the host's pg_dump is older, so the container that publishes the port does it.
    r = run_kompose("--root", str(root), "shop", "db:export")
    assert r.code == 0, r.err
    assert f"retrying via container {server.container}" in r.err
    (dump,) = (root / "shop").glob(f"{name}_*Z.sql")
    assert "Dumped by pg_dump version 17." in dump.read_text()
    # A local DB_HOST: the publishing container is chosen up front.
    env_file = root / "shop" / ".env"
    env_file.write_text(env_file.read_text().replace("127.0.0.2", "127.0.0.1"))
    with server.connect(name) as conn:
        conn.execute("DELETE FROM items")
    r = run_kompose("--root", str(root), "shop", "db:import")
    assert r.code == 0, r.err
    assert f"via container {server.container}" in r.err and "publishes port" in r.err
    assert len(server.rows(name)) == 9
    assert server.password not in r.out + r.err
    assert os.environ.get("PGPASSWORD") is None


def test_a_container_of_another_project_is_never_this_stacks_database(
        pg_container: object, tmp_path: Path) -> None:
    """Two roots on one engine (prod and staging) with the same layout: the other root's
    server answers to the same DB_HOST, on a network this stack never joins. With the
    stack's own containers down, its commands must not dump or replace that database."""
    from tests.conftest import ContainerPostgres

    assert isinstance(pg_container, ContainerPostgres)
    server = replace(pg_container, created=[])
    name = server.new_name()
    server.create(name, rows=7)
    own = f"kt-own-{uuid.uuid4().hex[:8]}"
    subprocess.run(["docker", "network", "create", own], check=True, capture_output=True)
    try:
        root = make_stacks(tmp_path / "root", {"shop": {
            ".env": server.env_text(name),
            "compose.yaml": "services:\n  app:\n    image: busybox:latest\n"
                            f"    networks: [own]\nnetworks:\n  own:\n    name: {own}\n"
                            "    external: true\n"}})
        folder = root / "shop"

        def kompose(*args: str) -> Any:
            r = run_kompose("--root", str(root), *args)
            assert server.password not in r.out + r.err
            return r

        # Reached on purpose (DB_CONTAINER): a dump to try an import with.
        r = kompose("-e", f"DB_CONTAINER={server.container}", "shop", "db:export")
        assert r.code == 0, r.err
        (dump,) = folder.glob(f"{name}_*Z.sql")
        with server.connect(name) as conn:
            conn.execute("DELETE FROM items WHERE id > 2")
        elsewhere = (f"{server.container} answers to DB_HOST={server.alias}, but on networks "
                     f"this stack does not join; set DB_CONTAINER")
        for command in ("db:export", "db:import"):
            r = kompose("shop", command)
            assert r.code == 1, r.err
            assert "via host tools" in r.err and elsewhere in r.err, r.err
            assert f"docker exec -e PGPASSWORD -e PGCONNECT_TIMEOUT={CONNECT_TIMEOUT} " \
                   f"-e KOMPOSE_EXEC_MARK {server.container}" not in r.err
        assert [p for p in folder.glob(f"{name}_*") if p.suffix != ".json"] == [dump]
        assert len(server.rows(name)) == 2  # not replaced
        listing = kompose("--list").out
        assert "container:" not in listing, listing
        r = kompose("-e", "DB_ACCESS=container", "shop", "db:import")
        assert r.code == 1 and "on this stack's networks" in r.err and elsewhere in r.err
        assert len(server.rows(name)) == 2
        # When Compose cannot read the files, no container is taken either, and it says why.
        r = kompose("-e", "KOMPOSE_COMPOSE_CMD=false", "-n", "shop", "db:export")
        assert (f"{server.container} answers to DB_HOST={server.alias}, but cannot read the "
                f"stack's compose files (docker compose config: exit 1)") in r.err, r.err
        # The stack that does join the server's network finds it with its containers down,
        # also when the service that joins it is in a profile not chosen in the .env.
        (folder / "compose.yaml").write_text(server.compose.replace(
            "    networks: [db]\n", "    profiles: [app]\n    networks: [db]\n"))
        r = kompose("shop", "db:import")
        assert r.code == 0, r.err
        assert f"via container {server.container}" in r.err
        assert len(server.rows(name)) == 7
    finally:
        subprocess.run(["docker", "network", "rm", own], capture_output=True)
        with server.connect() as conn:
            drop_database(conn, name)


def test_a_process_that_cannot_be_stopped_in_the_container_is_said(
        newer_server: object, tmp_path: Path) -> None:
    """An image without `cat` (Debian's dash needs the real one): kompose cannot end the
    pg_dump it started there, and says so, in the output and in the JSON report."""
    import json
    import signal
    import sys
    import time

    from tests.conftest import ContainerPostgres

    assert isinstance(newer_server, ContainerPostgres)
    server = newer_server
    name = server.new_name()
    server.create(name, rows=3)
    subprocess.run(["docker", "exec", server.container, "sh", "-c",
                    "rm -f /bin/cat /usr/bin/cat"], check=True, capture_output=True)
    root = make_stacks(tmp_path / "root", {"shop": {"compose.yaml": server.compose,
                                                    ".env": server.env_text(name)}})
    holder = server.connect(name)
    holder.execute("BEGIN")
    holder.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")

    def dumping() -> list[int]:
        with server.connect() as conn:
            return [r[0] for r in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND "
                "application_name = 'pg_dump' AND wait_event_type = 'Lock'", (name,))]
    try:
        proc = subprocess.Popen([sys.executable, "-m", "kompose_py", "--root", str(root),
                                 "--json", "shop", "db:export"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not dumping():
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 143, err
        warning = (f"could not stop pg_dump in container {server.container} (no cat in the "
                   f"container); it may still be running there")
        assert warning in err
        (stack,) = json.loads(out)["stacks"]
        assert stack["status"] == "cancelled"
        assert warning in [s["error"] for s in stack["steps"]]
        assert dumping()  # as said: still there
    finally:
        with server.connect() as conn:
            for pid in dumping():
                conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        holder.close()
