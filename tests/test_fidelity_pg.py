"""What PostgreSQL itself does with a rich database restored by a role that is not a superuser
(plain pg_dump, psql and SQL, no kompose): the oracle for db:import's fidelity.

On the host's PostgreSQL 15 and on kompose/postgres:17 in a container:
- pg_dump | psql as the (non-superuser) owner into a database created OWNER <owner> is
  complete; into one owned by another role the publication stops the load;
- another role's per-database setting, a custom and a superuser-only parameter cannot be set
  by the owner; GRANT SET ON PARAMETER / CREATEROLE (16+: with ADMIN OPTION) allow them;
- a database privilege keeps its grantor only when granted after SET ROLE grantor;
- a dump with large objects ends psql's --single-transaction part-way;
- both renames of a swap commit or roll back together.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from tests.richdb import Rich, Server, create_rich, drop_rich, server, snapshot

__all__ = ["server"]


@pytest.fixture
def rich(server: Server) -> Iterator[Rich]:
    made = create_rich(server)
    try:
        yield made
    finally:
        drop_rich(server, made)


def _create_copy(server: Server, rich: Rich, user: str, *, owned_by_owner: bool) -> str:
    copy = f"{rich.db}_copy_{uuid.uuid4().hex[:6]}"
    owner = f' OWNER "{rich.owner}"' if owned_by_owner else ""
    with server.connect(user, rich.password) as conn:
        conn.execute(f'CREATE DATABASE "{copy}"{owner} TEMPLATE template0 ENCODING \'UTF8\' '
                     f"LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8' LOCALE_PROVIDER icu "
                     f"ICU_LOCALE 'de-DE'")
    return copy


def _dump(server: Server, rich: Rich, user: str) -> bytes:
    done = server.tool("pg_dump", user, rich.password, ["-d", rich.db])
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


def _load(server: Server, rich: Rich, user: str, db: str, dump: bytes,
          prelude: str = "") -> tuple[int, str]:
    done = server.tool("psql", user, rich.password,
                       ["-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-d", db],
                       stdin=prelude.encode() + dump)
    return done.returncode, done.stderr.decode()


def test_round_trip_as_the_owner_into_a_database_it_owns(server: Server, rich: Rich) -> None:
    copy = _create_copy(server, rich, rich.owner, owned_by_owner=True)
    code, err = _load(server, rich, rich.owner, copy, _dump(server, rich, rich.owner))
    assert code == 0, err
    before, after = snapshot(server, rich.db), snapshot(server, copy)
    assert after["dump"] == before["dump"]
    assert after["extensions"] == before["extensions"]
    # The large objects' own BEGIN/COMMIT ends --single-transaction part-way (issue item 5).
    assert "there is already a transaction in progress" in err


def test_a_member_of_the_owner_loads_completely_as_the_owner(server: Server,
                                                            rich: Rich) -> None:
    """kompose_test-like: CREATEDB and a member of the owner. Created OWNER <owner> and
    loaded after SET ROLE <owner>, the copy equals the original, extension owners too."""
    copy = _create_copy(server, rich, rich.loader, owned_by_owner=True)
    code, err = _load(server, rich, rich.loader, copy, _dump(server, rich, rich.loader),
                      prelude=f'SET ROLE "{rich.owner}";\n')
    assert code == 0, err
    before, after = snapshot(server, rich.db), snapshot(server, copy)
    assert after["dump"] == before["dump"]
    assert after["extensions"] == before["extensions"]


def test_without_set_role_the_extensions_change_owner(server: Server, rich: Rich) -> None:
    copy = _create_copy(server, rich, rich.loader, owned_by_owner=True)
    code, err = _load(server, rich, rich.loader, copy, _dump(server, rich, rich.loader))
    assert code == 0, err
    owners = {name: owner for name, owner, *_ in snapshot(server, copy)["extensions"]}
    assert owners["citext"] == rich.loader  # was the owner's: pg_dump has no OWNER for it


def test_publication_stops_the_load_into_a_database_owned_by_the_loader(
        server: Server, rich: Rich) -> None:
    """Issue item 1: the scratch database owned by the importing role, not the owner."""
    dump = _dump(server, rich, rich.loader)
    copy = _create_copy(server, rich, rich.loader, owned_by_owner=False)
    code, err = _load(server, rich, rich.loader, copy, dump)
    assert code != 0
    assert f"ERROR:  permission denied for database {copy}" in err
    # Without its publication the same dump loads there: the publication is the cause.
    other = _create_copy(server, rich, rich.loader, owned_by_owner=False)
    without = b"\n".join(line for line in dump.split(b"\n") if b" PUBLICATION " not in line)
    code, err = _load(server, rich, rich.loader, other, without)
    assert code == 0, err


def _sqlstate(server: Server, user: str, password: str, *statements: str) -> str | None:
    with server.connect(user, password) as conn:
        try:
            for statement in statements:
                conn.execute(statement)
        except psycopg.Error as exc:
            return f"{exc.sqlstate} {str(exc).strip().splitlines()[0]}"
    return None


def test_what_the_owner_may_not_set(server: Server, rich: Rich) -> None:
    """Issue items 2 and 3, as the owner (CREATEDB, no CREATEROLE), on a database it owns."""
    copy = _create_copy(server, rich, rich.owner, owned_by_owner=True)
    owner, pw = rich.owner, rich.password
    role_setting = f'ALTER ROLE "{rich.reader}" IN DATABASE "{copy}" SET work_mem = \'16MB\''
    denied = _sqlstate(server, owner, pw, role_setting)
    assert denied is not None and denied.startswith("42501")
    # 15 says a bare "permission denied", naming neither role nor setting; 17 adds "to alter
    # role" and a detail.
    assert denied.split(" ", 1)[1] in ("permission denied", "permission denied to alter role")
    for name, value in (("my.setting", "'x'"), ("log_min_duration_statement", "250")):
        refused = _sqlstate(server, owner, pw, f'ALTER DATABASE "{copy}" SET {name} = {value}')
        assert refused == f'42501 permission denied to set parameter "{name}"'
    # What the owner may do: user parameters, its own role's setting, limits and comments.
    assert _sqlstate(server, owner, pw,
                     f'ALTER DATABASE "{copy}" SET work_mem = \'8MB\'',
                     f'ALTER ROLE "{owner}" IN DATABASE "{copy}" SET statement_timeout = 1000',
                     f'ALTER DATABASE "{copy}" WITH CONNECTION LIMIT 5',
                     f'ALTER DATABASE "{copy}" WITH IS_TEMPLATE true',
                     f'ALTER DATABASE "{copy}" WITH IS_TEMPLATE false',
                     f'COMMENT ON DATABASE "{copy}" IS \'c\'') is None
    # And what allows the rest.
    with server.su() as conn:
        conn.execute(f'GRANT SET ON PARAMETER my.setting, log_min_duration_statement '
                     f'TO "{owner}"')
        conn.execute(f'ALTER ROLE "{owner}" CREATEROLE')
    assert _sqlstate(server, owner, pw, f'ALTER DATABASE "{copy}" SET my.setting = \'x\'',
                     f'ALTER DATABASE "{copy}" SET log_min_duration_statement = 250') is None
    if server.version >= 160000:
        # CREATEROLE alone is no longer enough: ADMIN OPTION on the role too.
        assert _sqlstate(server, owner, pw, role_setting) is not None
        with server.su() as conn:
            conn.execute(f'GRANT "{rich.reader}" TO "{owner}" WITH ADMIN OPTION, '
                         f'INHERIT FALSE, SET FALSE')
    assert _sqlstate(server, owner, pw, role_setting) is None


def _grantors(server: Server, db: str) -> set[tuple[str, str, str]]:
    with server.su() as conn:
        rows = conn.execute(
            "SELECT pg_get_userbyid(a.grantor), CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE "
            "pg_get_userbyid(a.grantee) END, a.privilege_type FROM pg_database d, "
            "aclexplode(d.datacl) a WHERE d.datname = %s", (db,)).fetchall()
    return {(str(g), str(e), str(p)) for g, e, p in rows}


def test_a_grant_keeps_its_grantor_only_after_set_role(server: Server, rich: Rich) -> None:
    """Issue item 4: granted again the plain way, also by a superuser, the reader's TEMPORARY
    comes back granted by the owner, and REVOKE … FROM app CASCADE no longer reaches it."""
    assert (rich.app, rich.reader, "TEMPORARY") in _grantors(server, rich.db)
    plain = _create_copy(server, rich, rich.owner, owned_by_owner=True)
    kept = _create_copy(server, rich, rich.owner, owned_by_owner=True)
    with server.su() as conn:
        for copy in (plain, kept):
            conn.execute(f'GRANT TEMPORARY ON DATABASE "{copy}" TO "{rich.app}" '
                         f'WITH GRANT OPTION')
        conn.execute(f'GRANT TEMPORARY ON DATABASE "{plain}" TO "{rich.reader}"')
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="grantor must be current"):
            conn.execute(f'GRANT TEMPORARY ON DATABASE "{plain}" TO "{rich.reader}" '
                         f'GRANTED BY "{rich.app}"')
        conn.execute(f'SET ROLE "{rich.app}"; GRANT TEMPORARY ON DATABASE "{kept}" TO '
                     f'"{rich.reader}"; RESET ROLE')
        for copy in (plain, kept):
            conn.execute(f'REVOKE TEMPORARY ON DATABASE "{copy}" FROM "{rich.app}" CASCADE')
    assert (rich.owner, rich.reader, "TEMPORARY") in _grantors(server, plain)
    assert not any(e == rich.reader and p == "TEMPORARY" for _, e, p in _grantors(server, kept))
    # As the owner, who is no member of app, SET ROLE is refused.
    refused = _sqlstate(server, rich.owner, rich.password, f'SET ROLE "{rich.app}"')
    assert refused is not None and refused.startswith("42501")


def test_both_renames_commit_or_roll_back_together(server: Server, rich: Rich) -> None:
    """Issue item 8, as the non-superuser owner with CREATEDB: a session ended between the
    two renames (a SIGKILLed client) leaves both names as they were."""
    copy = _create_copy(server, rich, rich.owner, owned_by_owner=True)
    aside = f"{rich.db}_aside"
    with server.connect(rich.owner, rich.password) as conn:
        conn.autocommit = False
        conn.execute(f'ALTER DATABASE "{rich.db}" RENAME TO "{aside}"')
        with server.su() as su:
            su.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
        with pytest.raises(psycopg.OperationalError):
            conn.execute(f'ALTER DATABASE "{copy}" RENAME TO "{rich.db}"')
    with server.su() as su:
        names = {r[0] for r in su.execute("SELECT datname FROM pg_database").fetchall()}
    assert rich.db in names and copy in names and aside not in names
    with server.connect(rich.owner, rich.password) as conn:
        conn.execute(f'BEGIN; ALTER DATABASE "{rich.db}" RENAME TO "{aside}"; '
                     f'ALTER DATABASE "{copy}" RENAME TO "{rich.db}"; COMMIT')
    with server.su() as su:
        names = {r[0] for r in su.execute("SELECT datname FROM pg_database").fetchall()}
    assert rich.db in names and aside in names and copy not in names
