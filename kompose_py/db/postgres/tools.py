"""PostgreSQL's client tools: their connection options, the database argument, the libpq
variables db hooks get, and the one line that says what went wrong in their output."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from kompose_py.db.settings import DbSettings
from kompose_py.runner.command import failure_line

CONNECT_TIMEOUT = "10"


_CONNINFO_SPECIAL = re.compile(r"=|^postgres(ql)?://")


def pg_hook_env(values: Mapping[str, str]) -> dict[str, str]:
    """db hooks get libpq's variables, so `pg_dump "$DB_NAME"` in a hook reaches the same
    server as kompose does from the host, with no password on its command line."""
    env = {"PGHOST": values.get("DB_HOST") or "localhost",
           "PGPORT": values.get("DB_PORT") or "5432", "PGDATABASE": values.get("DB_NAME", "")}
    if values.get("DB_USER"):
        env["PGUSER"] = values["DB_USER"]
    if values.get("DB_PASSWORD"):
        env["PGPASSWORD"] = values["DB_PASSWORD"]
    return env


def db_argument(name: str) -> str:
    """-d for pg_dump/psql: a name containing '=' or a URI prefix would be read as a
    connection string, so such names are passed as a quoted ``dbname='...'`` instead."""
    if not _CONNINFO_SPECIAL.search(name):
        return name
    escaped = name.replace("\\", "\\\\").replace("'", "\\'")
    return f"dbname='{escaped}'"


def pg_options(db: DbSettings, host: str, port: str) -> list[str]:
    args = ["--no-password", "-h", host, "-p", port]
    if db.user:
        args += ["-U", db.user]
    return args



_MISMATCH = re.compile(r"server version: ([^;]+); pg_dump version: (.+)")


_CONNECTION_FAILED = re.compile(r'connection to server .*? failed: (?:FATAL:\s*)?(.*)')


def pg_error(tail: Sequence[str], db: DbSettings, mode: str, described: str) -> str:
    """The one line of pg_dump/psql's stderr that says what went wrong, in kompose's words
    when it is about the connection, the container or the versions. ``mode``: "host" or
    "container"; ``described``: where the tools ran, as the access describes itself."""
    text = "\n".join(tail)
    mismatch = _MISMATCH.search(text)
    if mismatch:
        server, tool = mismatch[1].strip(), mismatch[2].strip()
        hint = ("set DB_CONTAINER to the server's container (or DB_ACCESS=container), or "
                "install a newer pg_dump on the host") if mode == "host" else \
            "the container's pg_dump is older than the server it talks to"
        return f"server is PostgreSQL {server}, pg_dump is {tool}: {hint}"
    line = failure_line(tail)
    match = _CONNECTION_FAILED.search(line)
    if match:
        where = db.where if mode == "host" else \
            f"{db.user or 'the server'} in {described}"
        return f"cannot connect to {where}: {match[1].strip()}"
    if mode == "container" and "executable file not found" in line:
        return f"{described} has no PostgreSQL client tools: {line}"
    if mode == "container" and ("No such container" in line or "is not running" in line):
        return f"{described}: {line}"
    return line


def with_password(env: Mapping[str, str], db: DbSettings) -> dict[str, str]:
    """The environment a client tool (or the docker client that starts it) gets: the stack's,
    with DB_PASSWORD as PGPASSWORD and nothing else as one. Never argv: /proc/<pid>/cmdline is
    public; docker passes a variable named by ``-e PGPASSWORD`` on from its own environment."""
    out = dict(env)
    out.pop("PGPASSWORD", None)
    if db.password:
        out["PGPASSWORD"] = db.password
    return out


def client_flags(db: DbSettings, stdin: bool, tty: bool,
                 env: Mapping[str, str] | None = None) -> list[str]:
    """``docker exec``/``docker run`` flags of a client tool: its stdin and terminal, the
    password (and PGOPTIONS, when ``env`` has it) by name only (docker passes the value on from
    its own environment), the connect time-out."""
    flags = ["-i"] if stdin or tty else []
    if tty:
        flags.append("-t")
    if db.password:
        flags += ["-e", "PGPASSWORD"]
    if env is not None and "PGOPTIONS" in env:
        flags += ["-e", "PGOPTIONS"]
    return [*flags, "-e", f"PGCONNECT_TIMEOUT={CONNECT_TIMEOUT}"]


def load_tuning(env: Mapping[str, str], server_version: int | None) -> dict[str, str]:
    """The environment of pg_restore into an import's scratch database: libpq's PGOPTIONS with
    ``backend_flush_after`` at its largest (256 pages, 2 MB; PostgreSQL 9.6+), so the loaded
    data goes to disk while it is written instead of all at once at the checkpoint that DROP
    DATABASE of the replaced copy forces (on a 600 MB database that halved the DROP). The
    stack's own PGOPTIONS comes after, so its settings win."""
    if server_version is None or server_version < 90600:
        return dict(env)
    own = env.get("PGOPTIONS", "").strip()
    return {**env, "PGOPTIONS": "-c backend_flush_after=256" + (f" {own}" if own else "")}
