"""PostgreSQL's catalog and the statements of a safe replace: the target's own settings (read
and given to the scratch copy), CREATE DATABASE like the target, and the swap's steps
(refuse connections, end sessions, rename, drop). Statements are built with ``psycopg.sql``
and run through an :class:`~kompose_py.db.reach.Admin`; the journal and the order of the steps
are restore.py's."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Protocol

from kompose_py.db.postgres import carryover
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


def _retry(admin: Admin, database: str, statement: psql_sql.Composable) -> None:
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
    """DROP DATABASE, also of a copy that is a template (the flag goes first)."""
    from psycopg import sql

    if not exists(admin, database):
        return
    flag, statement = carryover.drop_steps(database)
    admin.execute(sql.SQL(flag))  # quoted text, not a template
    _retry(admin, database, sql.SQL(statement))


def swap(admin: Admin, target: str, scratch: str, aside: str) -> None:
    """Both renames in one transaction (carryover.swap_script), after ending the sessions on
    both databases; again while sessions come back, for at most SWAP_WAIT_SECONDS. A failure
    leaves both names as they were."""
    from psycopg import sql

    # One line: it is shown as one statement too.
    text = " ".join(carryover.swap_script(target, scratch, aside).splitlines())
    script = sql.SQL(text)  # quoted text, not a template
    deadline = time.monotonic() + SWAP_WAIT_SECONDS
    while True:
        terminate(admin, target)
        terminate(admin, scratch)
        try:
            admin.execute(script)
            return
        except StepError as exc:
            if "being accessed by other users" not in exc.message \
                    or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


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
