"""A database of the kind real applications have, and a snapshot of it to compare a restore
with (a helper for tests, not a test file).

The rich database is owned by a role that is not a superuser (how most stacks connect) and
has several schemas, trusted contrib extensions (pgcrypto, citext, hstore, pg_trgm), ICU
collations (a deterministic one and a case-insensitive one), declarative partitions, row-level
security, triggers with their functions, a materialized view, large objects, a publication,
default privileges, and on the database itself: an ACL with a grant made by a grantee (``app``
grants TEMPORARY, which it holds WITH GRANT OPTION, to ``reader``), another role's
per-database setting, a custom and a superuser-only parameter, a list parameter, a connection
limit and a comment. Role and database names are unique per call.

Left out on purpose: FORCE ROW LEVEL SECURITY on a table with rows (pg_dump itself fails on
it unless run by a superuser or a BYPASSRLS role) and object grants made by a non-owner
(pg_dump writes them under SET SESSION AUTHORIZATION, which only a superuser may load).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest

PASSWORD = "kt-fidelity-pw"


@dataclass
class Server:
    """A PostgreSQL server reached from the tests (host, port) as a superuser, whose client
    tools run on the host or, with ``container``, inside that container (then over TCP to
    localhost:``tool_port``, so that passwords are checked as for any client)."""

    host: str
    port: str
    su_user: str
    su_password: str = field(repr=False)
    container: str = ""
    tool_port: str = "5432"
    cleanup_roles: list[str] = field(default_factory=list)

    def connect(self, user: str, password: str, dbname: str = "postgres") -> Any:
        return psycopg.connect(host=self.host, port=self.port, user=user, password=password,
                               dbname=dbname, autocommit=True)

    def su(self, dbname: str = "postgres") -> Any:
        return self.connect(self.su_user, self.su_password, dbname)

    @property
    def version(self) -> int:
        with self.su() as conn:
            return int(conn.execute("SHOW server_version_num").fetchone()[0])

    def tool(self, program: str, user: str, password: str, args: Sequence[str],
             stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        """pg_dump/psql as ``user``; the password only in the environment."""
        env = {**os.environ, "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "10"}
        if self.container:
            argv = ["docker", "exec", "-i", "-e", "PGPASSWORD", self.container, program,
                    "-h", "localhost", "-p", self.tool_port, "-U", user, *args]
        else:
            argv = [program, "-h", self.host, "-p", self.port, "-U", user, *args]
        return subprocess.run(argv, input=stdin, capture_output=True, env=env, timeout=300)


def host_superuser(host: str, port: str) -> Server:
    """A password superuser of its own on the host's server, created through the local
    postgres account (peer authentication); dropped by :func:`drop_server_roles`."""
    name = f"kt_fid_su_{uuid.uuid4().hex[:8]}"
    password = f"su-{uuid.uuid4().hex}"
    script = f"CREATE ROLE {name} LOGIN SUPERUSER PASSWORD '{password}';\n"
    subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-v",
                    "ON_ERROR_STOP=1", "-p", port, "-d", "postgres"],
                   input=script.encode(), check=True, capture_output=True)
    server = Server(host, port, name, password, tool_port=port)
    server.cleanup_roles.append(name)
    return server


def drop_server_roles(server: Server) -> None:
    for name in server.cleanup_roles:
        subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-p",
                        server.port, "-d", "postgres"],
                       input=f'DROP ROLE IF EXISTS "{name}";\n'.encode(), capture_output=True)


@dataclass(frozen=True)
class Rich:
    db: str
    owner: str
    app: str
    reader: str
    # Logs in with CREATEDB, a member of the owner and nothing else (kompose_test-like).
    loader: str
    password: str = field(default=PASSWORD, repr=False)

    @property
    def roles(self) -> tuple[str, ...]:
        return (self.owner, self.app, self.reader, self.loader)


def names(stem: str = "kt_fid") -> Rich:
    tag = uuid.uuid4().hex[:8]
    return Rich(f"{stem}_{tag}", f"{stem}_{tag}_owner", f"{stem}_{tag}_app",
                f"{stem}_{tag}_reader", f"{stem}_{tag}_loader")


def create_roles(server: Server, rich: Rich, *, empowered: bool) -> None:
    """The owner logs in with CREATEDB and no superuser. ``empowered``: it is also given what
    PostgreSQL asks of a non-superuser to carry every database-level property (CREATEROLE,
    on 16+ ADMIN OPTION on the reader; membership in ``app``; SET on the two parameters)."""
    with server.su() as conn:
        conn.execute(f'CREATE ROLE "{rich.owner}" LOGIN CREATEDB PASSWORD \'{PASSWORD}\'')
        conn.execute(f'CREATE ROLE "{rich.app}" NOLOGIN')
        conn.execute(f'CREATE ROLE "{rich.reader}" LOGIN PASSWORD \'{PASSWORD}\'')
        conn.execute(f'CREATE ROLE "{rich.loader}" LOGIN CREATEDB PASSWORD \'{PASSWORD}\' '
                     f'IN ROLE "{rich.owner}"')
        if empowered:
            conn.execute(f'ALTER ROLE "{rich.owner}" CREATEROLE')
            if server.version >= 160000:
                conn.execute(f'GRANT "{rich.reader}" TO "{rich.owner}" WITH ADMIN OPTION, '
                             f'INHERIT FALSE, SET FALSE')
            conn.execute(f'GRANT "{rich.app}" TO "{rich.owner}"')
            conn.execute(f'GRANT SET ON PARAMETER my.setting, log_min_duration_statement '
                         f'TO "{rich.owner}"')


CONTENT = """
CREATE SCHEMA app_data;
CREATE SCHEMA audit;
CREATE EXTENSION pgcrypto;
CREATE EXTENSION citext WITH SCHEMA app_data;
CREATE EXTENSION hstore;
CREATE EXTENSION pg_trgm;
CREATE COLLATION app_data.german (provider = icu, locale = 'de-DE');
CREATE COLLATION app_data.nocase (provider = icu, locale = 'und-u-ks-level2',
                                  deterministic = false);
CREATE TABLE app_data.customers (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token uuid NOT NULL DEFAULT gen_random_uuid(),
    email app_data.citext UNIQUE NOT NULL,
    name text COLLATE app_data.german NOT NULL,
    nick text COLLATE app_data.nocase,
    attrs hstore,
    secret bytea,
    created timestamptz NOT NULL DEFAULT '2024-01-01 00:00:00+00');
CREATE INDEX customers_name_trgm ON app_data.customers USING gin (name gin_trgm_ops);
CREATE TABLE app_data.events (id bigint NOT NULL, at date NOT NULL, payload jsonb)
    PARTITION BY RANGE (at);
CREATE TABLE app_data.events_2024 PARTITION OF app_data.events
    FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE app_data.events_2025 PARTITION OF app_data.events
    FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE app_data.events_other PARTITION OF app_data.events DEFAULT;
CREATE TABLE app_data.notes (id int PRIMARY KEY, author text NOT NULL, body text);
ALTER TABLE app_data.notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY notes_own ON app_data.notes USING (author = current_user);
CREATE TABLE audit.log (id bigserial PRIMARY KEY, tbl text, op text, row_data jsonb);
CREATE FUNCTION audit.log_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO audit.log (tbl, op, row_data) VALUES (TG_TABLE_NAME, TG_OP, to_jsonb(NEW));
  RETURN NEW;
END $$;
CREATE TRIGGER customers_audit AFTER INSERT OR UPDATE ON app_data.customers
    FOR EACH ROW EXECUTE FUNCTION audit.log_change();
INSERT INTO app_data.customers (email, name, nick, attrs, secret)
SELECT 'User' || g || '@Example.com', 'Müller ' || g, 'Nick' || g,
       hstore('tier', (g % 3)::text), digest('s' || g, 'sha256')
FROM generate_series(1, 50) g;
INSERT INTO app_data.events SELECT g, date '2024-06-01' + g * 10, jsonb_build_object('n', g)
FROM generate_series(1, 60) g;
INSERT INTO app_data.notes VALUES (1, 'alice', 'hello'), (2, 'bob', 'world');
CREATE MATERIALIZED VIEW app_data.tiers AS
    SELECT attrs -> 'tier' AS tier, count(*) AS n FROM app_data.customers GROUP BY 1;
CREATE PUBLICATION {pub} FOR TABLE app_data.customers, app_data.events;
ALTER DEFAULT PRIVILEGES IN SCHEMA app_data GRANT SELECT ON TABLES TO {reader};
GRANT USAGE ON SCHEMA app_data TO {reader};
GRANT SELECT ON app_data.customers TO {app} WITH GRANT OPTION;
SELECT lo_from_bytea(0, 'a large object of the owner'::bytea) AS lo \\gset
GRANT SELECT ON LARGE OBJECT :lo TO {reader};
"""


def create_rich(server: Server, *, empowered: bool = False, stem: str = "kt_fid") -> Rich:
    rich = names(stem)
    try:
        _fill(server, rich, empowered)
    except BaseException:
        drop_rich(server, rich)
        raise
    return rich


def _fill(server: Server, rich: Rich, empowered: bool) -> None:
    create_roles(server, rich, empowered=empowered)
    owner, app, reader = (f'"{r}"' for r in rich.roles[:3])
    db = f'"{rich.db}"'
    with server.su() as conn:
        conn.execute(f"CREATE DATABASE {db} OWNER {owner} TEMPLATE template0 ENCODING 'UTF8' "
                     f"LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8' LOCALE_PROVIDER icu "
                     f"ICU_LOCALE 'de-DE'")
    # The contents as the owner, through psql (\gset for the large object's oid).
    script = CONTENT.format(pub=f'"pub_{rich.db}"', reader=reader, app=app)
    done = server.tool("psql", rich.owner, rich.password,
                       ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", rich.db],
                       stdin=script.encode())
    assert done.returncode == 0, done.stderr.decode()
    with server.su() as conn:
        # Database level: as the owner where the owner would do it, as app for its grant.
        for statement in (
                f"SET ROLE {owner}",
                f"REVOKE CONNECT, TEMPORARY ON DATABASE {db} FROM PUBLIC",
                f"GRANT CONNECT ON DATABASE {db} TO {reader}",
                f"GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {app} WITH GRANT OPTION",
                f"SET ROLE {app}",
                f"GRANT TEMPORARY ON DATABASE {db} TO {reader}",
                "RESET ROLE",
                f"ALTER ROLE {reader} IN DATABASE {db} SET work_mem = '16MB'",
                f"ALTER ROLE {owner} IN DATABASE {db} SET statement_timeout = '30s'",
                f"ALTER DATABASE {db} SET my.setting = 'it''s custom'",
                f"ALTER DATABASE {db} SET log_min_duration_statement = 250",
                f"ALTER DATABASE {db} SET search_path = app_data, \"$user\", public",
                f"ALTER DATABASE {db} SET work_mem = '8MB'",
                f"ALTER DATABASE {db} CONNECTION LIMIT 50",
                f"COMMENT ON DATABASE {db} IS 'rich test database: it''s got everything'"):
            conn.execute(statement)


def drop_rich(server: Server, rich: Rich) -> None:
    """The database and every copy of it (scratch, aside), then the roles."""
    with server.su() as conn:
        for (name,) in conn.execute("SELECT datname FROM pg_database WHERE datname = %s OR "
                                    "datname LIKE %s", (rich.db, rich.db + "\\_%")).fetchall():
            drop_database(conn, name)
        existing = [r for (r,) in conn.execute("SELECT rolname FROM pg_roles WHERE rolname = "
                                               "ANY(%s)", (list(rich.roles),)).fetchall()]
        if existing:
            quoted = ", ".join(f'"{r}"' for r in existing)
            conn.execute(f"DROP OWNED BY {quoted}")  # the parameter grants
        for role in rich.roles:
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def drop_database(conn: Any, name: str) -> None:
    for _attempt in range(50):
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s"
                     " AND pid <> pg_backend_pid()", (name,))
        try:
            conn.execute(f'ALTER DATABASE "{name}" WITH IS_TEMPLATE false')
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            return
        except psycopg.errors.ObjectInUse:
            import time

            time.sleep(0.1)
    raise RuntimeError(f"cannot drop {name}")


# -- the snapshot ---------------------------------------------------------------------------
CATALOG_QUERY = """
SELECT pg_get_userbyid(d.datdba) AS owner, pg_encoding_to_char(d.encoding) AS encoding,
  d.datcollate, d.datctype, to_jsonb(d) ->> 'datlocprovider' AS datlocprovider,
  coalesce(to_jsonb(d) ->> 'datlocale', to_jsonb(d) ->> 'daticulocale') AS daticulocale,
  to_jsonb(d) ->> 'daticurules' AS daticurules,
  d.datconnlimit, d.datistemplate, d.datallowconn, ts.spcname AS tablespace,
  shobj_description(d.oid, 'pg_database') AS comment,
  d.datacl IS NULL AS default_acl,
  (SELECT coalesce(jsonb_agg(jsonb_build_array(u.n, pg_get_userbyid(a.grantor),
      CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END,
      a.privilege_type, a.is_grantable) ORDER BY u.n, a.privilege_type), '[]')
   FROM unnest(d.datacl) WITH ORDINALITY u(item, n), aclexplode(ARRAY[u.item]) a) AS acl,
  (SELECT coalesce(jsonb_object_agg(coalesce(pg_get_userbyid(NULLIF(s.setrole, 0)), '*'),
                                    to_jsonb(s.setconfig)), '{}')
   FROM pg_db_role_setting s WHERE s.setdatabase = d.oid) AS settings
FROM pg_database d JOIN pg_tablespace ts ON ts.oid = d.dattablespace WHERE d.datname = %s
"""

# What pg_dump does not show and a restore can still change.
EXTENSIONS_QUERY = """
SELECT e.extname, pg_get_userbyid(e.extowner) AS owner, e.extversion,
       e.extnamespace::regnamespace::text AS schema
FROM pg_extension e ORDER BY 1
"""

_VOLATILE = re.compile(r"^(\\restrict |\\unrestrict |-- Dumped (from|by) )")


def snapshot(server: Server, db: str) -> dict[str, Any]:
    """A superuser's pg_dump of ``db`` (normalised: no version lines, no \\restrict keys),
    its catalog entries, and its extensions with their owners."""
    done = server.tool("pg_dump", server.su_user, server.su_password, ["-d", db])
    assert done.returncode == 0, done.stderr.decode()
    dump = [line for line in done.stdout.decode().splitlines() if not _VOLATILE.match(line)]
    with server.su() as conn:
        row = conn.execute(CATALOG_QUERY, (db,)).fetchone()
        columns = [c.name for c in conn.execute(CATALOG_QUERY, (db,)).description or ()]
    with server.su(db) as conn:
        extensions = [tuple(r) for r in conn.execute(EXTENSIONS_QUERY).fetchall()]
    assert row is not None, f"no database {db}"
    catalog = dict(zip(columns, row, strict=True))
    return {"dump": dump, "database": json.loads(json.dumps(catalog, default=str)),
            "extensions": extensions}


def differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Readable differences between two snapshots (empty: identical)."""
    out = []
    for key in ("database", "extensions"):
        if before[key] != after[key]:
            if isinstance(before[key], dict):
                for k in sorted(set(before[key]) | set(after[key])):
                    if before[key].get(k) != after[key].get(k):
                        out.append(f"{key}.{k}: {before[key].get(k)!r} -> "
                                   f"{after[key].get(k)!r}")
            else:
                out.append(f"{key}: {before[key]!r} -> {after[key]!r}")
    if before["dump"] != after["dump"]:
        import difflib

        out += list(difflib.unified_diff(before["dump"], after["dump"], "before", "after",
                                         lineterm="", n=1))[:60]
    return out


# -- fixtures (imported by the test modules that use them) --------------------------------------
@pytest.fixture(scope="module", params=["pg15-host", "pg17-container"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    """The host's PostgreSQL 15 (host tools) and kompose/postgres:17 in a container (its own
    tools, through docker exec), each with a superuser the tests may use."""
    from tests import conftest

    if request.param == "pg15-host":
        try:
            with psycopg.connect(host=conftest.PG["host"], port=conftest.PG["port"],
                                 user=conftest.PG["user"], password=conftest.PG["password"],
                                 dbname="postgres", connect_timeout=5):
                pass
            found = subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-X", "-Atc",
                                    "SELECT 1", "-p", conftest.PG["port"]],
                                   capture_output=True)
            assert found.returncode == 0, found.stderr
        except Exception as exc:
            conftest._missing(f"the host's PostgreSQL with local postgres access ({exc})")
        host = host_superuser(conftest.PG["host"], conftest.PG["port"])
        try:
            yield host
        finally:
            drop_server_roles(host)
        return
    request.getfixturevalue("docker_engine")
    if subprocess.run(["docker", "image", "inspect", conftest.PG_IMAGE_NEWER],
                      capture_output=True).returncode != 0:
        conftest._missing(f"the PostgreSQL image {conftest.PG_IMAGE_NEWER}")
    started = conftest.start_pg_container(conftest.PG_IMAGE_NEWER, "fid" + uuid.uuid4().hex[:6])
    try:
        yield Server(started.host, started.port, started.user, started.password,
                     container=started.container, tool_port="5432")
    finally:
        conftest.stop_pg_container(started)


# -- administrative SQL as the importing role, both ways kompose runs it ------------------------
class SqlError(Exception):
    pass


class Admin:
    """Like kompose's two admin paths: psycopg from the host (one autocommit connection),
    or psql inside the server's container (one session per statement, read from stdin
    with ON_ERROR_STOP)."""

    def __init__(self, server: Server, user: str, password: str) -> None:
        self.server, self.user, self.password = server, user, password
        self.conn: Any = None
        if not server.container:
            from psycopg.rows import dict_row

            self.conn = psycopg.connect(host=server.host, port=server.port, user=user,
                                        password=password, dbname="postgres", autocommit=True,
                                        row_factory=dict_row)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()

    def __enter__(self) -> Admin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _psql(self, text: str) -> str:
        done = self.server.tool("psql", self.user, self.password,
                                ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d",
                                 "postgres"], stdin=(text + ";\n").encode())
        if done.returncode != 0:
            raise SqlError(done.stderr.decode().strip())
        return done.stdout.decode()

    def query(self, text: str) -> list[dict[str, Any]]:
        if self.conn is None:
            out = self._psql(f"SELECT coalesce(jsonb_agg(to_jsonb(q)), '[]') FROM ({text}) q")
            return list(json.loads(out.strip().splitlines()[-1]))
        try:
            return list(self.conn.execute(text).fetchall())
        except psycopg.Error as exc:
            raise SqlError(str(exc).strip()) from None

    def execute(self, text: str) -> None:
        if self.conn is None:
            self._psql(text)
            return
        try:
            self.conn.execute(text)
        except psycopg.Error as exc:
            # An explicit BEGIN in the text leaves the session in the failed transaction.
            if self.conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
                self.conn.execute("ROLLBACK")
            raise SqlError(str(exc).strip()) from None
