"""PostgreSQL's catalog and the statements of a safe replace: the target's own settings (read
and given to the scratch copy), CREATE DATABASE like the target, and the swap's steps
(refuse connections, end sessions, rename, drop). Statements are built with ``psycopg.sql``
and run through an :class:`~kompose_py.db.reach.Admin`; the journal and the order of the steps
are restore.py's."""

from __future__ import annotations

import json
import re
import time
from typing import TYPE_CHECKING, Any, Protocol

from kompose_py.errors import StepError

if TYPE_CHECKING:
    from psycopg import sql as psql_sql

class Admin(Protocol):
    """Administrative SQL on the maintenance database."""

    def query(self, statement: Any) -> list[dict[str, Any]]: ...

    def execute(self, statement: Any) -> None: ...

    def close(self) -> None: ...


# How long an import retries a swap step while clients of the target come back.
SWAP_WAIT_SECONDS = 10.0
_MAX_IDENTIFIER = 63  # bytes, PostgreSQL's NAMEDATALEN - 1


# -- the target's own settings -------------------------------------------------------------
def target_info(admin: Admin, name: str) -> dict[str, Any] | None:
    from psycopg import sql

    rows = admin.query(sql.SQL(
        "SELECT d.datname, pg_encoding_to_char(d.encoding) AS encoding, d.datcollate,"
        " d.datctype, d.datconnlimit, d.datallowconn, pg_get_userbyid(d.datdba) AS owner,"
        " d.datacl IS NULL AS default_acl, shobj_description(d.oid, 'pg_database') AS comment,"
        " to_jsonb(d) AS catalog, current_user AS me,"
        " ARRAY(SELECT jsonb_build_object('grantee', CASE WHEN a.grantee = 0 THEN NULL"
        "        ELSE pg_get_userbyid(a.grantee) END, 'privilege', a.privilege_type,"
        "        'grantable', a.is_grantable) FROM aclexplode(d.datacl) a) AS acl,"
        " ARRAY(SELECT jsonb_build_object('role', CASE WHEN s.setrole = 0 THEN NULL"
        "        ELSE pg_get_userbyid(s.setrole) END, 'config', s.setconfig)"
        "        FROM pg_db_role_setting s WHERE s.setdatabase = d.oid) AS settings"
        " FROM pg_database d WHERE d.datname = {}").format(sql.Literal(name)))
    if not rows:
        return None
    row = dict(rows[0])
    for key in ("catalog",):
        if isinstance(row.get(key), str):
            row[key] = json.loads(row[key])
    row["acl"] = [json.loads(x) if isinstance(x, str) else x for x in row.get("acl") or []]
    row["settings"] = [json.loads(x) if isinstance(x, str) else x
                       for x in row.get("settings") or []]
    return row


def create_like(scratch: psql_sql.Identifier, target: dict[str, Any] | None
                 ) -> psql_sql.Composed:
    """CREATE DATABASE for the scratch copy: the target's encoding, locale and collation
    provider (template0 keeps template1's extras out)."""
    from psycopg import sql

    create = sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(scratch)
    if not target:
        return create
    parts = [create, sql.SQL("ENCODING {} LC_COLLATE {} LC_CTYPE {}").format(
        sql.Literal(target["encoding"]), sql.Literal(target["datcollate"]),
        sql.Literal(target["datctype"]))]
    catalog = target.get("catalog") or {}
    provider = {"i": "icu", "b": "builtin", "c": "libc"}.get(catalog.get("datlocprovider", ""))
    if provider and provider != "libc":
        parts.append(sql.SQL("LOCALE_PROVIDER {}").format(sql.SQL(provider)))
        locale = catalog.get("datlocale") or catalog.get("daticulocale")
        if locale:
            key = "ICU_LOCALE" if provider == "icu" else "BUILTIN_LOCALE"
            parts.append(sql.SQL(key + " {}").format(sql.Literal(locale)))
        if catalog.get("daticurules"):
            parts.append(sql.SQL("ICU_RULES {}").format(sql.Literal(catalog["daticurules"])))
    return sql.SQL(" ").join(parts)


# GUCs whose value is a list: stored flattened ("\"$user\", public"), set element by element.
_LIST_SETTINGS = frozenset({"search_path", "temp_tablespaces", "session_preload_libraries",
                            "local_preload_libraries", "shared_preload_libraries",
                            "default_text_search_config"})


_LIST_ITEM = re.compile(r'\s*("(?:[^"]|"")*"|[^,]+?)\s*(?:,|$)')


def _setting_value(name: str, value: str) -> psql_sql.Composable:
    from psycopg import sql

    if name.lower() not in _LIST_SETTINGS - {"default_text_search_config"}:
        return sql.Literal(value)
    items = []
    for match in _LIST_ITEM.finditer(value):
        item = match[1]
        if not item:
            continue
        if item.startswith('"'):
            item = item[1:-1].replace('""', '"')
        items.append(sql.Literal(item))
    return sql.SQL(", ").join(items) if items else sql.Literal("")


def copy_settings(admin: Admin, target: dict[str, Any], scratch: str) -> None:
    """Give the loaded scratch database what belongs to the database rather than to its
    contents, so that the swap keeps it: owner, ACL (a REVOKE CONNECT … FROM PUBLIC must
    survive), ALTER DATABASE/ROLE … SET values, connection limit, comment."""
    from psycopg import sql

    new = sql.Identifier(scratch)
    if target["owner"] != target["me"]:
        try:
            admin.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                new, sql.Identifier(target["owner"])))
        except StepError as exc:
            raise StepError(f"cannot keep {target['datname']}'s owner {target['owner']}: "
                            f"{exc.message}; the target is untouched",
                            hint="import as the owner, or as a member of its role") from None
    if target["datconnlimit"] != -1:
        admin.execute(sql.SQL("ALTER DATABASE {} CONNECTION LIMIT {}").format(
            new, sql.Literal(int(target["datconnlimit"]))))
    if target.get("comment") is not None:
        admin.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(
            new, sql.Literal(target["comment"])))
    for entry in target["settings"]:
        for item in entry.get("config") or []:
            name, _, value = str(item).partition("=")
            setting = sql.SQL(".").join(sql.Identifier(p) for p in name.split("."))
            if entry.get("role"):
                statement = sql.SQL("ALTER ROLE {} IN DATABASE {} SET {} TO {}").format(
                    sql.Identifier(entry["role"]), new, setting, _setting_value(name, value))
            else:
                statement = sql.SQL("ALTER DATABASE {} SET {} TO {}").format(
                    new, setting, _setting_value(name, value))
            admin.execute(statement)
    if not target["default_acl"]:
        admin.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(new))
        for grant in target["acl"]:
            grantee = sql.Identifier(grant["grantee"]) if grant["grantee"] else \
                sql.SQL("PUBLIC")
            admin.execute(sql.SQL("GRANT {} ON DATABASE {} TO {}{}").format(
                sql.SQL(grant["privilege"]), new, grantee,
                sql.SQL(" WITH GRANT OPTION") if grant["grantable"] else sql.SQL("")))


def allow(admin: Admin, target: str, info: dict[str, Any] | None) -> None:
    from psycopg import sql

    if info is None or info.get("datallowconn", True):
        admin.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(
            sql.Identifier(target)))


def terminate(admin: Admin, database: str) -> None:
    """End the sessions on ``database`` that this role may end. (Not DROP ... WITH (FORCE):
    for a non-superuser that fails outright when an autovacuum worker is on the database,
    which a freshly loaded one often has; a plain DROP stops autovacuum by itself.)"""
    from psycopg import sql

    admin.query(sql.SQL(
        "SELECT pg_terminate_backend(pid) AS ended FROM pg_stat_activity WHERE datname = {}"
        " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        " AND pg_has_role(usesysid, 'MEMBER')").format(sql.Literal(database)))


def _retry(admin: Admin, database: str, statement: psql_sql.Composed) -> None:
    """End sessions on ``database`` and run ``statement``; again while sessions come back,
    for at most SWAP_WAIT_SECONDS, so a reconnecting client cannot block it forever."""
    deadline = time.monotonic() + SWAP_WAIT_SECONDS
    while True:
        terminate(admin, database)
        try:
            admin.execute(statement)
            return
        except StepError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def drop(admin: Admin, database: str) -> None:
    from psycopg import sql

    _retry(admin, database, sql.SQL("DROP DATABASE IF EXISTS {}").format(
        sql.Identifier(database)))


def exists(admin: Admin, name: str) -> bool:
    from psycopg import sql

    return bool(admin.query(sql.SQL("SELECT 1 AS found FROM pg_database WHERE datname = {}")
                            .format(sql.Literal(name))))



def rename(admin: Admin, old: str, new: str, retry: bool = True) -> None:
    """ALTER DATABASE old RENAME TO new (ending sessions on ``old`` while they come back)."""
    from psycopg import sql

    statement = sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(old),
                                                                 sql.Identifier(new))
    if retry:
        _retry(admin, old, statement)
    else:
        admin.execute(statement)


def refuse_connections(admin: Admin, name: str) -> None:
    from psycopg import sql

    admin.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(
        sql.Identifier(name)))


def allows_connections(admin: Admin, name: str) -> bool | None:
    """Whether ``name`` accepts new connections (None: no such database)."""
    from psycopg import sql

    rows = admin.query(sql.SQL("SELECT datallowconn FROM pg_database WHERE datname = {}")
                       .format(sql.Literal(name)))
    return bool(rows[0]["datallowconn"]) if rows else None


def database_names(admin: Admin) -> list[str]:
    from psycopg import sql

    return [str(row["datname"]) for row in admin.query(sql.SQL("SELECT datname FROM pg_database"))]


def scratch_names(target: str, token: str) -> tuple[str, str]:
    """The scratch and the aside name for ``target``: valid identifiers (at most 63 bytes,
    cut at a character boundary, whatever the name's script) and distinct per import."""
    room = _MAX_IDENTIFIER - len("_kompose_new_") - len(token)
    raw = target.encode()
    if len(raw) <= room:
        stem = target
    else:
        # Cut, the names of two databases that differ only after the cut would be the same,
        # and recovering one would rename or drop the other's copy: a digest of the whole
        # name keeps them apart.
        import hashlib

        digest = hashlib.sha256(raw).hexdigest()[:8]
        stem = raw[:room - len(digest) - 1].decode(errors="ignore") + "_" + digest
    return f"{stem}_kompose_new_{token}", f"{stem}_kompose_old_{token}"
