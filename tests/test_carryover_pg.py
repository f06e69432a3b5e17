"""kompose_py.db.postgres.carryover against real servers: the host's PostgreSQL 15 (admin SQL
through psycopg, host tools) and kompose/postgres:17 in a container (admin SQL through psql
in the container, its tools), as kompose runs them.

A restore done with plain tools and carryover's statements (create the scratch copy, load,
carry the database-level properties, swap atomically) gives a target identical to the
original (superuser pg_dump + catalog entries + extension owners), as a non-superuser that
PostgreSQL lets carry everything and as a superuser; blockers() names exactly what a role
without those rights cannot carry, and nothing for a superuser.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from kompose_py.db.postgres import carryover
from tests.richdb import (
    Admin,
    Rich,
    Server,
    SqlError,
    create_rich,
    differences,
    drop_rich,
    server,
    snapshot,
)

__all__ = ["server"]


@pytest.fixture
def plain(server: Server) -> Iterator[Rich]:
    made = create_rich(server)
    try:
        yield made
    finally:
        drop_rich(server, made)


@pytest.fixture
def empowered(server: Server) -> Iterator[Rich]:
    made = create_rich(server, empowered=True)
    try:
        yield made
    finally:
        drop_rich(server, made)


def _retrying(admin: Admin, databases: tuple[str, ...], statement: str) -> None:
    """End the sessions on ``databases`` and run ``statement``, again while a session (an
    autovacuum worker, a client coming back) still holds one of them."""
    for attempt in range(100):
        for name in databases:
            admin.query(carryover.terminate_query(name))
        try:
            admin.execute(statement)
            return
        except SqlError as exc:
            if "being accessed by other users" not in str(exc) or attempt == 99:
                raise
            time.sleep(0.1)


def restore(server: Server, rich: Rich, user: str, password: str, *,
            carry_what_can: bool = False) -> tuple[list[str], list[str]]:
    """db:import with plain tools and carryover: (blocker lines, what was left out). With
    blockers and not ``carry_what_can``, nothing is touched."""
    admin = Admin(server, user, password)
    try:
        facts = admin.query(carryover.facts_query(rich.db))[0]
        found = [b.line for b in carryover.blockers(facts)]
        if found and not carry_what_can:
            return found, []
        token = uuid.uuid4().hex[:8]
        scratch, aside = f"{rich.db}_kompose_new_{token}", f"{rich.db}_kompose_old_{token}"
        admin.execute(carryover.create_scratch(facts, scratch))
        dumped = server.tool("pg_dump", user, password, ["-d", rich.db])
        assert dumped.returncode == 0, dumped.stderr.decode()
        loaded = server.tool("psql", user, password,
                             ["-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction",
                              "-d", scratch],
                             stdin=dumped.stdout)
        assert loaded.returncode == 0, loaded.stderr.decode()
        steps, dropped = carryover.carry_over(facts, scratch)
        for step in steps:
            admin.execute(step.sql)
        if facts["allow_connections"]:
            admin.execute(carryover.refuse_connections(rich.db))
        try:
            _retrying(admin, (rich.db, scratch),
                      carryover.swap_script(rich.db, scratch, aside))
        except SqlError:
            admin.execute(carryover.allow_connections(rich.db))
            raise
        for statement in carryover.drop_steps(aside):
            _retrying(admin, (aside,), statement)
        return found, dropped
    finally:
        admin.close()


def test_round_trip_as_a_non_superuser_owner_is_identical(server: Server,
                                                          empowered: Rich) -> None:
    """The owner (no superuser) with what PostgreSQL asks to carry everything: CREATEROLE
    (16+: and ADMIN OPTION on the reader), membership in the grantor, SET on the two
    parameters."""
    before = snapshot(server, empowered.db)
    found, dropped = restore(server, empowered, empowered.owner, empowered.password)
    assert (found, dropped) == ([], [])
    assert differences(before, snapshot(server, empowered.db)) == []


def test_round_trip_as_a_superuser_is_identical(server: Server, plain: Rich) -> None:
    """Of a template database, too (its copy is one; the replaced one can still be dropped)."""
    with server.su() as conn:
        conn.execute(f'ALTER DATABASE "{plain.db}" WITH IS_TEMPLATE true')
    before = snapshot(server, plain.db)
    assert before["database"]["datistemplate"] is True
    found, dropped = restore(server, plain, server.su_user, server.su_password)
    assert (found, dropped) == ([], [])
    after = snapshot(server, plain.db)
    # PostgreSQL's own behaviour, with plain pg_dump | psql too: an extension belongs to
    # whoever runs CREATE EXTENSION (a dump has no OWNER for it), here the superuser.
    assert {e[0]: e[1] for e in after["extensions"]} == {
        e[0]: server.su_user if e[1] == plain.owner else e[1] for e in before["extensions"]}
    after["extensions"] = before["extensions"]
    assert differences(before, after) == []


def test_a_member_of_the_owner_restores_what_it_can(server: Server, empowered: Rich) -> None:
    """A kompose_test-like role (CREATEDB, member of the owner, no CREATEROLE): the one thing
    it cannot carry is the reader's setting; carrying what it can leaves out exactly that.
    It loads as itself, as psql does (under SET ROLE owner, a dump with objects of a role the
    owner is not a member of would fail): the extensions become its own."""
    before = snapshot(server, empowered.db)
    loader, pw = empowered.loader, empowered.password
    found, dropped = restore(server, empowered, loader, pw)
    assert found == [carryover.Blocker(
        empowered.reader, f"its setting work_mem=16MB in database {empowered.db} (ALTER ROLE "
        f"… IN DATABASE) may not be set by {loader}",
        f'connect as a superuser or as {empowered.reader}, or ' + (
            f'ALTER ROLE "{loader}" CREATEROLE and GRANT "{empowered.reader}" TO "{loader}" '
            f'WITH ADMIN OPTION' if server.version >= 160000 else
            f'ALTER ROLE "{loader}" CREATEROLE')).line]
    assert snapshot(server, empowered.db) == before  # refused: nothing touched
    found, dropped = restore(server, empowered, loader, pw, carry_what_can=True)
    assert dropped == [f"setting work_mem=16MB of role {empowered.reader} in database "
                       f"{empowered.db}: not set"]
    after = snapshot(server, empowered.db)
    assert differences({**before, "extensions": []}, {**after, "extensions": []}) == [
        f"database.settings: {before['database']['settings']!r} -> "
        f"{after['database']['settings']!r}"]
    del before["database"]["settings"][empowered.reader]
    assert after["dump"] == before["dump"] and after["database"] == before["database"]
    assert {owner for ext, owner, *_ in after["extensions"] if ext != "plpgsql"} == {loader}


def test_blockers_of_a_plain_owner_are_exactly_what_postgresql_refuses(
        server: Server, plain: Rich) -> None:
    """The owner without CREATEROLE, parameter rights or membership in app: four items, and
    carried anyway, the copy differs from the original in exactly those four."""
    before = snapshot(server, plain.db)
    owner, db = plain.owner, plain.db
    found, _ = restore(server, plain, owner, plain.password)
    admin_hint = (f'ALTER ROLE "{owner}" CREATEROLE and GRANT "{plain.reader}" TO "{owner}" '
                  f'WITH ADMIN OPTION') if server.version >= 160000 else \
        f'ALTER ROLE "{owner}" CREATEROLE'
    set_hint = f'GRANT "{plain.app}" TO "{owner}"' + (
        " WITH SET TRUE" if server.version >= 160000 else "")
    assert sorted(found) == sorted([
        f"role {owner}: setting my.setting=it's custom of database {db} needs the right to "
        f"set parameter my.setting; to allow it: connect as a superuser, or GRANT SET ON "
        f'PARAMETER my.setting TO "{owner}"',
        f"role {owner}: setting log_min_duration_statement=250 of database {db} needs the "
        f"right to set parameter log_min_duration_statement; to allow it: connect as a "
        f'superuser, or GRANT SET ON PARAMETER log_min_duration_statement TO "{owner}"',
        f"role {plain.reader}: its setting work_mem=16MB in database {db} (ALTER ROLE … IN "
        f"DATABASE) may not be set by {owner}; to allow it: connect as a superuser or as "
        f"{plain.reader}, or {admin_hint}",
        f"role {plain.app}: its grant of TEMPORARY on database {db} to {plain.reader} can "
        f"only be made by {plain.app}; to allow it: connect as a superuser, or {set_hint}"])
    assert snapshot(server, plain.db) == before
    _, dropped = restore(server, plain, owner, plain.password, carry_what_can=True)
    assert sorted(dropped) == sorted([
        f"setting my.setting=it's custom of database {db}: not set",
        f"setting log_min_duration_statement=250 of database {db}: not set",
        f"setting work_mem=16MB of role {plain.reader} in database {db}: not set",
        f"TEMPORARY on database {db} to {plain.reader}: granted by {owner} instead of "
        f"{plain.app}"])
    after = snapshot(server, plain.db)
    b_db, a_db = before["database"], after["database"]
    assert a_db["settings"] == {
        "*": [s for s in b_db["settings"]["*"]
              if not s.startswith(("my.setting", "log_min_duration"))],
        owner: b_db["settings"][owner]}
    # Granted by the owner, the reader's TEMPORARY joins the owner's item for the reader.
    assert [4, plain.app, plain.reader, "TEMPORARY", False] in b_db["acl"]
    assert [2, owner, plain.reader, "CONNECT", False] in b_db["acl"]
    assert a_db["acl"] == sorted([r for r in b_db["acl"] if r[0] != 4]
                                 + [[2, owner, plain.reader, "TEMPORARY", False]],
                                 key=lambda r: (r[0], r[3]))
    for key in ("settings", "acl"):
        a_db[key] = b_db[key]
    assert differences(before, after) == []


def test_no_blockers_for_a_superuser_or_an_empowered_owner(server: Server, plain: Rich,
                                                           empowered: Rich) -> None:
    with Admin(server, server.su_user, server.su_password) as admin:
        facts = admin.query(carryover.facts_query(plain.db))[0]
    assert carryover.blockers(facts) == []
    with Admin(server, empowered.owner, empowered.password) as admin:
        facts = admin.query(carryover.facts_query(empowered.db))[0]
    assert facts["server_version"] >= 150000
    assert carryover.blockers(facts) == []


# -- the swap, killed at every point ---------------------------------------------------------
def _names(server: Server) -> set[str]:
    with server.su() as conn:
        return {r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()}


@pytest.mark.parametrize("cut", ["after-refuse", "after-first-rename", "before-commit",
                                 "after-commit"])
def test_swap_killed_at_any_point_leaves_the_target_name_answering(
        server: Server, plain: Rich, cut: str) -> None:
    """The importing session ended at each point of the swap (as a SIGKILL of kompose ends
    it): the target's name exists throughout, and recovery() puts the rest right."""
    owner, pw, target = plain.owner, plain.password, plain.db
    token = uuid.uuid4().hex[:8]
    scratch, aside = f"{target}_kompose_new_{token}", f"{target}_kompose_old_{token}"
    with server.connect(owner, pw) as conn:
        conn.execute(f'CREATE DATABASE "{scratch}" TEMPLATE template0')
    with server.connect(owner, pw, scratch) as conn:
        conn.execute("CREATE TABLE marker (new boolean)")
    conn = server.connect(owner, pw)
    steps = [carryover.refuse_connections(target), "BEGIN",
             *carryover.swap_statements(target, scratch, aside), "COMMIT"]
    stop_after = {"after-refuse": 1, "after-first-rename": 3, "before-commit": 4,
                  "after-commit": 5}[cut]
    for statement in steps[:stop_after]:
        conn.execute(statement)
    with server.su() as su:
        su.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")
    conn.close()
    existing = _names(server)
    assert target in existing
    assert (aside in existing) == (cut == "after-commit")
    plan = carryover.recovery(target, scratch, aside, existing & {target, scratch, aside},
                              "connections-off", connections_were_allowed=True)
    with Admin(server, owner, pw) as admin:
        for step in plan:
            _retrying(admin, (scratch, aside), step.sql)
    assert _names(server) & {target, scratch, aside} == {target}
    with server.su() as su:
        allowed = su.execute("SELECT datallowconn FROM pg_database WHERE datname = %s",
                             (target,)).fetchone()
    assert allowed == (True,)
    with server.connect(owner, pw, target) as check:
        swapped = check.execute("SELECT to_regclass('marker') IS NOT NULL").fetchone()
    assert swapped == ((cut == "after-commit"),)


def test_a_failed_set_role_group_leaves_the_session_as_it_was(server: Server,
                                                              plain: Rich) -> None:
    """A Step run as another role and failing: psycopg's one connection (simple query, one
    implicit transaction) is back to the connecting role and not in a failed transaction;
    psql's session has ended. A failed BEGIN … COMMIT text needs a ROLLBACK on psycopg's
    connection (richdb.Admin sends it)."""
    with Admin(server, plain.owner, plain.password) as admin:
        with pytest.raises(SqlError, match="does not exist"):
            admin.execute(f'SET ROLE "{plain.owner}"; GRANT CONNECT ON DATABASE '
                          f'"{plain.db}" TO "no_such_role_{uuid.uuid4().hex[:6]}"; RESET ROLE')
        if admin.conn is not None:
            assert admin.conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert admin.query("SELECT current_user AS me") == [{"me": plain.owner}]
        with pytest.raises(SqlError, match="does not exist"):
            admin.execute(carryover.swap_script(plain.db, "no_such_db", "never"))
        assert admin.query("SELECT count(*) AS n FROM pg_database WHERE datname = "
                           + carryover.literal(plain.db)) == [{"n": 1}]
