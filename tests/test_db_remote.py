"""A database on a Docker engine reached over SSH (issue 9): the stacks' .env names the engine
(``DOCKER_HOST=ssh://…``, or ``DOCKER_CONTEXT`` of a context with an ssh endpoint), and
kompose runs Compose, pg_dump and psql there with ``docker exec`` through ssh, streaming the
dump to and from files on this machine.

The "remote" engine is this machine's own, behind an sshd of the test session's own
(the ``ssh_engine`` fixture), so the same engine answers both ways; that every engine call
went through ssh is checked from the wrapper's call log."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import (
    PG_IMAGE,
    Result,
    SshEngine,
    _image_there,
    _missing,
    make_stacks,
    run_kompose,
)

TRAILER = "-- PostgreSQL database dump complete"


def _compose_db(network: str) -> str:
    return f"""services:
  postgres:
    image: {PG_IMAGE}
    pull_policy: never
    environment:
      POSTGRES_USER: ${{DB_USER}}
      POSTGRES_PASSWORD: ${{DB_PASSWORD}}
      POSTGRES_DB: shopdb
    volumes:
      - pgdata:/var/lib/postgresql/data
    healthcheck:
      test: ["CMD", "pg_isready", "-U", "app", "-d", "shopdb"]
      interval: 1s
      retries: 60
    networks: [shared]
volumes:
  pgdata:
networks:
  shared:
    name: {network}
    external: true
"""


def _compose_shop(network: str) -> str:
    return f"""services:
  app:
    image: busybox:latest
    pull_policy: never
    init: true
    command: ["sh", "-c", "while :; do sleep 3600; done"]
    networks: [shared]
networks:
  shared:
    name: {network}
    external: true
"""


@pytest.fixture(params=["DOCKER_HOST", "DOCKER_CONTEXT"])
def remote_root(request: pytest.FixtureRequest, ssh_engine: SshEngine, tmp_path: Path
                ) -> Iterator[tuple[Path, str, str, dict[str, str]]]:
    """A kompose root whose stacks run on the ssh engine: `db` runs PostgreSQL, `shop` names
    its database as ``DB_HOST=postgres``. Yields (root, password, engine label, environment of
    the kompose process)."""
    if not _image_there(PG_IMAGE):
        _missing(f"the PostgreSQL image {PG_IMAGE} (run scripts/setup-env.sh)")
    tag = uuid.uuid4().hex[:8]
    network, secret = f"kt-ssh-{tag}", f"Ssh-{tag}-Secret"
    env = ssh_engine.env()
    if request.param == "DOCKER_HOST":
        engine_line = f"DOCKER_HOST={ssh_engine.host}"
    else:
        # A context in a private Docker config (~/.docker is left alone), with the Compose
        # plugin the user's own config has.
        config = tmp_path / "docker-config"
        plugins = config / "cli-plugins"
        plugins.mkdir(parents=True)
        for folder in (Path.home() / ".docker" / "cli-plugins",
                       Path("/usr/local/lib/docker/cli-plugins"),
                       Path("/usr/libexec/docker/cli-plugins")):
            if (folder / "docker-compose").exists():
                (plugins / "docker-compose").symlink_to(folder / "docker-compose")
                break
        env["DOCKER_CONFIG"] = str(config)
        context = f"kt-ssh-{tag}"
        subprocess.run(["docker", "context", "create", context, "--docker",
                        f"host={ssh_engine.host}"], env={**os.environ, **env}, check=True,
                       capture_output=True)
        engine_line = f"DOCKER_CONTEXT={context}"
    docker_env = {**os.environ, **env, "DOCKER_HOST": ssh_engine.host}
    subprocess.run(["docker", "network", "create", network], env=docker_env, check=True,
                   capture_output=True)
    root = make_stacks(tmp_path / "root", {
        ".env": f"DB_USER=app\nDB_PASSWORD={secret}\n",
        "db": {".env": f"{engine_line}\nCOMPOSE_PROJECT_NAME=kt-sshdb-{tag}\n",
               "compose.yaml": _compose_db(network)},
        "shop": {".env": f"{engine_line}\nCOMPOSE_PROJECT_NAME=kt-sshshop-{tag}\n"
                         "DB_NAME=shopdb\nDB_HOST=postgres\n",
                 "compose.yaml": _compose_shop(network)},
    })
    try:
        yield root, secret, engine_line, env
    finally:
        # Over the same engine, as a user on another machine would have to.
        for project in (f"kt-sshdb-{tag}", f"kt-sshshop-{tag}"):
            subprocess.run(["docker", "compose", "-p", project, "down", "-v", "-t", "1"],
                           env=docker_env, capture_output=True, timeout=120)
        subprocess.run(["docker", "network", "rm", network], env=docker_env,
                       capture_output=True, timeout=60)


def test_database_on_an_ssh_engine(remote_root: tuple[Path, str, str, dict[str, str]],
                                   ssh_engine: SshEngine) -> None:
    root, secret, engine_line, env = remote_root
    calls_before = len(ssh_engine.calls.read_text().splitlines())

    def kompose(*args: str) -> Result:
        r = run_kompose("--root", str(root), *args, env=env)
        assert secret not in r.out + r.err  # the password is never shown
        return r

    r = kompose("*", "up", "-d", "--wait")
    assert r.code == 0, r.err
    # Every engine call went through the wrapper, hence through sshd.
    calls = ssh_engine.calls.read_text().splitlines()[calls_before:]
    assert calls and all("kt-ssh" in c and "docker system dial-stdio" in c for c in calls), calls

    r = kompose("shop", "db:shell", "-c",
                "CREATE TABLE items (id int PRIMARY KEY, label text NOT NULL);"
                "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 40) g;")
    assert r.code == 0, r.err

    def count() -> str:
        r = kompose("shop", "db:shell", "-At", "-c", "SELECT count(*) FROM items")
        assert r.code == 0, r.err
        return r.out.strip()

    assert count() == "40"
    listing = kompose("--list").out
    shop_line = next(x for x in listing.splitlines() if x.startswith("shop "))
    assert "container:kt-sshdb-" in shop_line, listing

    # Dry run: the exact docker exec line, on the ssh engine; nothing written.
    plan = kompose("-n", "shop", "db:export")
    assert plan.code == 0, plan.err
    assert f"on {engine_line}" in plan.err
    assert ("docker exec -e PGPASSWORD -e PGCONNECT_TIMEOUT=10 -e KOMPOSE_EXEC_MARK kt-sshdb-"
            in plan.err)
    assert "pg_dump --no-password -h localhost -p 5432 -U app" in plan.err
    assert not list((root / "shop").glob("shopdb_*"))

    r = kompose("shop", "db:export")
    assert r.code == 0, r.err
    assert "via container kt-sshdb-" in r.err and f"on {engine_line}" in r.err
    (dump,) = (root / "shop").glob("shopdb_*Z.sql")
    text = dump.read_text()
    assert "CREATE TABLE public.items" in text and "40\titem 40" in text
    assert TRAILER in text.splitlines()[-8:]  # complete (a \unrestrict line may follow)
    assert not [p for p in (root / "shop").iterdir() if p.name.endswith(".partial")]

    r = kompose("shop", "db:shell", "-c", "DELETE FROM items WHERE id > 5")
    assert r.code == 0, r.err
    assert count() == "5"
    r = kompose("shop", "db:import")
    assert r.code == 0, r.err
    assert f"on {engine_line}" in r.err
    assert count() == "40"

    r = kompose("*", "down", "-v", "-t", "1")
    assert r.code == 0, r.err
    # The password went to docker by name only: not even in ssh's command lines.
    assert secret not in ssh_engine.calls.read_text()



def test_a_container_gone_between_ps_and_inspect_is_not_an_unreachable_engine(
        tmp_path: Path) -> None:
    """Seen on the shared test engine over ssh: another project removed a container between
    kompose's `docker ps -q` and `docker inspect`; docker inspect then fails as a whole
    ("No such object") and kompose took the engine for unreachable, fell back to the host's
    tools and failed with `could not translate host name "postgres"`."""
    import json

    from kompose_py.backends import docker as pgaccess
    from kompose_py.runner.command import Command, Outcome

    alive = {"Name": "/kt-db-postgres-1", "State": {"Running": True},
             "Config": {"Labels": {"com.docker.compose.project": "kt-db",
                                   "com.docker.compose.service": "postgres"}},
             "NetworkSettings": {"Networks": {"shared": {"Aliases": ["postgres"]}},
                                 "Ports": {}}}
    calls: list[tuple[str, ...]] = []

    class Engine:
        def run(self, cmd: Command) -> Outcome:
            calls.append(cmd.argv)
            if cmd.argv[1] == "ps":
                ids = "aaa\ngone\n" if len(calls) == 1 else "aaa\n"
                return Outcome("success", 0, 0.1, stdout=ids.encode())
            if "gone" in cmd.argv:
                return Outcome("failed", 1, 0.1, stderr_tail=("Error: No such object: gone",),
                               stdout=b"[]\n")
            return Outcome("success", 0, 0.1, stdout=json.dumps([alive]).encode())

    found = pgaccess._ask_engine(Engine(), {}, tmp_path)  # type: ignore[arg-type]
    assert not isinstance(found, str), found
    assert [c.name for c in found] == ["kt-db-postgres-1"]
    assert len(calls) == 4
    # Any other failure is still the engine's answer, at once.

    class Down:
        def run(self, cmd: Command) -> Outcome:
            return Outcome("failed", 1, 0.1, stderr_tail=("Cannot connect to the Docker daemon",))

    assert pgaccess._ask_engine(Down(), {}, tmp_path) == (  # type: ignore[arg-type]
        "Cannot connect to the Docker daemon")
