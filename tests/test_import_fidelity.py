"""Issue 17: ``kompose db:export`` then ``kompose db:import`` put back a rich, real-world
database exactly as it was (a superuser pg_dump of it and its catalog entries: owner, ACL with
grantors, every role's settings, custom and superuser-only parameters, connection limit,
comment, locale, provider), in host mode (the host's PostgreSQL 15 and tools) and container
mode (PostgreSQL 17 in a container, its tools through docker exec), as the database's
non-superuser owner that PostgreSQL lets carry everything, and as a superuser.

A role that may not carry something is refused before anything is touched, one line each;
``--skip-unrestorable`` imports without it and lists what was left out, in text and JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import COMPOSE, make_stacks, run_kompose
from tests.richdb import Rich, Server, create_rich, differences, drop_rich, server, snapshot

__all__ = ["server"]


def stack_env(server: Server, rich: Rich, user: str, password: str) -> str:
    env = f"DB_NAME={rich.db}\nDB_USER={user}\nDB_PASSWORD={password}\n"
    if server.container:
        # Container mode: the server's own tools, through docker exec.
        return env + (f"DB_HOST={server.host}\nDB_PORT={server.port}\n"
                      f"DB_CONTAINER={server.container}\n")
    return env + f"DB_HOST={server.host}\nDB_PORT={server.port}\nDB_ACCESS=host\n"


def kompose(root: Path, *args: str) -> object:
    return run_kompose("--root", str(root), *args)


def rows(server: Server, rich: Rich) -> int:
    with server.su(rich.db) as conn:
        return int(conn.execute("SELECT count(*) FROM app_data.customers").fetchone()[0])


def scratch_left(server: Server, rich: Rich) -> list[str]:
    with server.su() as conn:
        return [r for (r,) in conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s",
            (rich.db + "\\_kompose\\_%",)).fetchall()]


@pytest.mark.parametrize(("who", "fmt"), [("owner", "plain"), ("superuser", "plain"),
                                           ("owner", "custom"), ("superuser", "directory")])
def test_export_then_import_puts_a_rich_database_back_exactly(
        tmp_path: Path, server: Server, who: str, fmt: str) -> None:
    """Every format: an archive's pg_restore is followed by the same settings carried over
    and the same swap as psql's load of a plain dump."""
    rich = create_rich(server, empowered=True)
    try:
        user, password = (rich.owner, rich.password) if who == "owner" else \
            (server.su_user, server.su_password)
        root = make_stacks(tmp_path, {"shop": {"compose.yaml": COMPOSE,
                                               ".env": stack_env(server, rich, user, password)}})
        before = snapshot(server, rich.db)
        r = kompose(root, "shop", "db:export", "--format", fmt)
        assert r.code == 0, r.all
        with server.su(rich.db) as conn:  # the live data moves on; the import brings it back
            conn.execute("DELETE FROM app_data.customers WHERE id > 5")
        r = kompose(root, "--json", "shop", "db:import")
        assert r.code == 0, r.all
        assert password not in r.all
        assert json.loads(r.out)["stacks"][0]["warnings"] == []
        after = snapshot(server, rich.db)
        assert differences({**before, "extensions": []}, {**after, "extensions": []}) == []
        if who == "owner":
            # Loaded as the owner, what the dump creates without an owner (extensions) is the
            # owner's again. (A superuser's load makes them the superuser's, as pg_restore.)
            assert before["extensions"] == after["extensions"]
        assert rows(server, rich) == 50
        assert scratch_left(server, rich) == []
    finally:
        drop_rich(server, rich)


def test_what_the_role_cannot_carry_is_refused_before_anything_is_touched(
        tmp_path: Path, server: Server) -> None:
    """The owner without CREATEROLE, SET on the parameters or membership in ``app``: the
    reader's per-database setting, the two parameters and app's grant cannot be put back."""
    rich = create_rich(server, empowered=False)
    try:
        root = make_stacks(tmp_path, {"shop": {
            "compose.yaml": COMPOSE, ".env": stack_env(server, rich, rich.owner, rich.password)}})
        assert kompose(root, "shop", "db:export").code == 0
        with server.su(rich.db) as conn:
            conn.execute("DELETE FROM app_data.customers WHERE id > 5")
        before = snapshot(server, rich.db)
        r = kompose(root, "--json", "shop", "db:import")
        assert r.code == 1, r.all
        doc = json.loads(r.out)["stacks"][0]
        assert doc["status"] == "failed" and "nothing was touched" in doc["message"]
        for needed in (f"role {rich.reader}: its setting work_mem=16MB",
                       "log_min_duration_statement", "my.setting",
                       f"role {rich.app}: its grant of TEMPORARY"):
            assert needed in doc["message"], doc["message"]
            assert needed in r.err, r.err
        assert "--skip-unrestorable" in doc["message"]
        lines = [x for x in r.err.splitlines() if "cannot carry over: role " in x]
        assert len(lines) == 4 and all("to allow it: " in x for x in lines), r.err
        # Refused before the load: the target as it was, no scratch copy, no journal.
        assert differences(before, snapshot(server, rich.db)) == []
        assert scratch_left(server, rich) == []
        assert not (root / "shop" / ".kompose-import.json").exists()

        r = kompose(root, "--json", "shop", "db:import", "--skip-unrestorable")
        assert r.code == 0, r.all
        warnings = json.loads(r.out)["stacks"][0]["warnings"]
        assert len(warnings) == 4, warnings
        assert any(f"granted by {rich.owner} instead of {rich.app}" in w for w in warnings)
        assert any("setting work_mem=16MB of role" in w for w in warnings)
        assert all(f"warning: {w}" in r.err for w in warnings), r.err
        assert rows(server, rich) == 50
    finally:
        drop_rich(server, rich)
