"""A hostile pass over the database layer's safety promises (issue 11 point 6, issue 12
points 1-5), against the real server in both modes.

States are forced with ordinary PostgreSQL locks held by another session, never with sleeps:
- a row lock on a ``pg_database`` entry (an open ``GRANT … ON DATABASE``, or a superuser's
  ``SELECT … FROM pg_database … FOR UPDATE``) blocks every ALTER/RENAME/DROP of it;
- an open ``COMMENT ON DATABASE`` holds the database object's lock: it blocks RENAME and DROP
  but not ``ALTER DATABASE … ALLOW_CONNECTIONS``.
kompose is then killed with SIGKILL while its statement waits, and the next command has to
put things right. "Gives up" and "at once" are proven structurally (a subprocess time-out
would fail the test, or the first kompose is provably still running), never by timing.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from kompose_py.db.dumpfiles import find_dumps
from kompose_py.db.journal import JOURNAL_NAME
from kompose_py.db.lock import LOCK_NAME
from kompose_py.db.postgres.catalog import scratch_names
from tests.conftest import (
    PG,
    ContainerPostgres,
    Postgres,
    drop_database,
    make_stacks,
)
from tests.dbharness import (
    KILL_CASES,
    WAIT_LONG,
    Holder,
    blocked,
    catalog,
    dump_files,
    journal,
    kill_mid_swap,
    kompose,
    leftovers,
    object_lock,
    output,
    phase_is,
    put_right,
    row_lock,
    start,
    summary_line,
    wait_for,
)

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (runuser, mount)")


# -- helpers --------------------------------------------------------------------------------
def stack_root(tmp_path: Path, pg: Postgres, hooks: str = "", **stacks: str) -> Path:
    tree: dict[str, Any] = {}
    for stack, name in stacks.items():
        tree[stack] = {"compose.yaml": pg.compose, ".env": pg.env_text(name)}
        if hooks:
            tree[stack]["hooks.sh"] = hooks
    return make_stacks(tmp_path / "root", tree)


class SuperSession:
    """psql as the host cluster's superuser (runuser -u postgres), fed line by line."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            ["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-A", "-t", "-v",
             "ON_ERROR_STOP=1", "-p", PG["port"], "-d", "postgres"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            bufsize=1)
        self.count = 0

    def run(self, text: str) -> list[str]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.count += 1
        mark = f"__kt_done_{self.count}"
        self.proc.stdin.write(f"{text}\n\\echo {mark}\n")
        self.proc.stdin.flush()
        lines = []
        for line in self.proc.stdout:
            if line.strip() == mark:
                return lines
            lines.append(line.rstrip("\n"))
        raise AssertionError(f"superuser psql ended: {lines}")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            assert self.proc.stdin is not None
            self.proc.stdin.write("ROLLBACK;\n\\q\n")
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def superuser(sql_text: str) -> str:
    out = subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-A", "-t",
                          "-v", "ON_ERROR_STOP=1", "-p", PG["port"], "-d", "postgres",
                          "-c", sql_text], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


# -- 12.1 / issue 17.8: the swap survives SIGKILL at each point ------------------------------
# (A kill at "drop-old", the swap committed and the replaced copy still there, is the forged
# state of the test after this one.)
NEXT = ("db:recover", "db:export", "db:import")


@pytest.mark.parametrize(("point", "orphan"), KILL_CASES,
                         ids=[f"{p}-{o}" if o else p for p, o in KILL_CASES])
def test_sigkill_during_the_swap_is_put_right_by_the_next_command(
        tmp_path: Path, server: Postgres, point: str, orphan: str) -> None:
    pg = server
    name = pg.new_name()
    pg.create(name, rows=30)
    root = stack_root(tmp_path, pg, shop=name)
    assert kompose(root, "shop", "db:export").code == 0
    with pg.connect(name) as conn:
        conn.execute("DELETE FROM items WHERE id > 10")  # the live data: 10 rows, dump: 30
    killed = kill_mid_swap(pg, root, "shop", name, point, orphan)
    next_command = NEXT[(KILL_CASES.index((point, orphan)) + isinstance(pg, ContainerPostgres))
                        % len(NEXT)]
    put_right(pg, root, "shop", name, killed, next_command, rows=(10, 30),
              dumps_before=1 + (point == "load"))


@pytest.mark.parametrize("phase", ["drop-old", "rename-in"])
def test_a_kill_right_after_the_swap_leaves_connections_refused_as_they_were(
        tmp_path: Path, server: Postgres, phase: str) -> None:
    """The target refused new connections before the import; kompose was killed after the
    new copy took its name (the swap committed: "drop-old"; "rename-in" is the journal of a
    kompose before the one-transaction swap), its replaced copy still there. The new copy
    is open here, as a kompose before the settings were carried over to the scratch copy
    left it: recovery drops the replaced copy and refuses connections again."""
    from psycopg import sql

    pg = server
    name = pg.new_name()
    _, aside = scratch_names(name, uuid.uuid4().hex[:8])
    pg.create(name, rows=5)
    pg.create(aside, rows=1)
    with pg.connect() as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(
            sql.Identifier(aside)))
    root = stack_root(tmp_path, pg, shop=name)
    (root / "shop" / JOURNAL_NAME).write_text(json.dumps({
        "target": name, "scratch": f"{name}_gone", "aside": aside, "phase": phase,
        "allow_connections": False}))

    def allowed() -> bool:
        with pg.connect() as conn:
            return bool(conn.execute("SELECT datallowconn FROM pg_database WHERE datname = %s",
                                     (name,)).fetchone()[0])

    assert allowed()
    r = kompose(root, "-n", "shop", "db:recover")  # connects to nothing, changes nothing
    assert r.code == 0, r.err
    assert allowed() and aside in pg.databases() and (root / "shop" / JOURNAL_NAME).exists()
    r = kompose(root, "shop", "db:recover")
    assert r.code == 0, r.err
    assert f"{name} refused new connections before the import: refusing them again" in r.err
    assert f"dropping the replaced copy {aside}" in r.err
    assert not allowed()
    assert aside not in pg.databases()
    assert not (root / "shop" / JOURNAL_NAME).exists()
    with pg.connect() as conn:  # the data is the new copy's
        conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(
            sql.Identifier(name)))
    assert len(pg.rows(name)) == 5


def test_a_target_reopened_after_an_import_stopped_while_loading_stays_open(
        tmp_path: Path, pg: Postgres) -> None:
    """The import was killed while loading (the target untouched, then refusing
    connections); the operator has opened it since. The next export recovers and leaves the
    target as the operator left it."""
    name = pg.new_name()
    pg.create(name, rows=3)
    root = stack_root(tmp_path, pg, shop=name)
    (root / "shop" / JOURNAL_NAME).write_text(json.dumps({
        "target": name, "scratch": f"{name}_gone", "aside": f"{name}_gone_too",
        "phase": "load", "allow_connections": False}))
    r = kompose(root, "shop", "db:export")
    assert r.code == 0, r.err
    assert "refusing them again" not in r.err
    assert catalog(pg, name)["datallowconn"] is True
    assert len(dump_files(root / "shop")) == 1


@pytest.mark.parametrize(("sig", "twice"), [(signal.SIGTERM, False), (signal.SIGINT, False),
                                           (signal.SIGTERM, True)],
                         ids=["SIGTERM", "SIGINT", "SIGTERM-twice"])
def test_export_stopped_while_pg_dump_waits_leaves_nothing_running(
        tmp_path: Path, server: Postgres, sig: int, twice: bool) -> None:
    """pg_dump waits for a lock (a long migration holds the table); the run is stopped. In a
    container the signal reaches the local docker client only: kompose ends pg_dump inside
    the container too, and the stack is cancelled, not failed."""
    pg = server
    name = pg.new_name()
    pg.create(name, rows=4)
    hooks = 'hook_error_db_export() { echo "$KOMPOSE_STATUS" >"$KOMPOSE_STACK_DIR/status"; }\n'
    root = stack_root(tmp_path, pg, hooks, shop=name)
    folder = root / "shop"
    holder = pg.connect(name)
    holder.execute("BEGIN")
    holder.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
    try:
        proc, logs = start(root, "--json", "shop", "db:export")

        def dumping() -> list[int]:
            with pg.connect() as conn:
                return [r[0] for r in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s AND "
                    "application_name = 'pg_dump'", (name,))]

        # (kompose's own session counting the rows at pg_dump's snapshot waits there too)
        wait_for("pg_dump waiting for the table's lock",
                 lambda: blocked(pg, "items") and dumping())
        assert dumping()
        os.kill(proc.pid, sig)
        if twice:  # the second ends kompose at once; what runs in the container ends too
            os.kill(proc.pid, sig)
        assert proc.wait(timeout=60) == 128 + sig, output(logs)
        # Still holding the lock: a pg_dump left running would still be waiting for it. (On
        # the host a second signal SIGKILLs pg_dump at once, before it can cancel its query:
        # the server ends that session when the lock is released.)
        if not twice or isinstance(pg, ContainerPostgres):
            wait_for("no pg_dump session left", lambda: not dumping(), limit=15)
    finally:
        holder.close()
    no_dump_left(folder)
    if twice:
        return
    report = json.loads(Path(f"{logs}.out").read_text())
    (stack,) = report["stacks"]
    assert stack["status"] == "cancelled", stack
    assert (folder / "status").read_text().strip() == "cancelled"
    no_dump_left(folder)


def test_recover_without_journal_finds_leftovers_and_disabled_target(tmp_path: Path,
                                                                      pg: Postgres) -> None:
    """The journal lost (another machine's kompose, a restored folder): db:recover still
    finds the scratch/aside databases by name and says what it found."""
    name = pg.new_name()
    pg.create(name, rows=5)
    scratch, aside = scratch_names(name, uuid.uuid4().hex[:8])
    with pg.connect() as conn:
        conn.execute(f'CREATE DATABASE "{scratch}"')
        conn.execute(f'CREATE DATABASE "{aside}"')
    root = stack_root(tmp_path, pg, shop=name)
    r = kompose(root, "shop", "db:recover")
    assert r.code == 0, r.all
    assert f"state: dropping the scratch database {scratch}" in r.err
    assert f"state: {aside} holds an earlier copy of {name}; kept" in r.err
    assert scratch not in pg.databases() and aside in pg.databases()
    assert len(pg.rows(name)) == 5



def exported_then_trimmed(tmp_path: Path, pg: Postgres, rows: int, keep: int
                          ) -> tuple[str, Path, Path]:
    """A database with ``rows`` items, one dump of it, then only ``keep`` rows left: an
    import that completes brings the rest back. (name, root, stack folder)"""
    name = pg.new_name()
    pg.create(name, rows=rows)
    root = stack_root(tmp_path, pg, shop=name)
    assert kompose(root, "shop", "db:export").code == 0
    with pg.connect(name) as conn:
        conn.execute("DELETE FROM items WHERE id > %s", (keep,))
    return name, root, root / "shop"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_the_swap_does_not_report_cancelled(tmp_path: Path, server: Postgres,
                                                         sig: signal.Signals) -> None:
    pg = server
    name, root, folder = exported_then_trimmed(tmp_path, pg, rows=30, keep=10)
    held = [row_lock(pg, name)]
    proc, logs = start(root, "shop", "db:import", env=WAIT_LONG)
    try:
        data = wait_for("connections-off", phase_is(folder, proc, "connections-off"))
        held.append(object_lock(pg, data["scratch"]))
        held.pop(0).release()
        wait_for("swap", phase_is(folder, proc, "swap"))
        wait_for("kompose waiting on the rename", lambda: blocked(pg, data["scratch"]))
        os.killpg(proc.pid, sig)  # Ctrl-C on a terminal goes to the whole group
        # The signal is taken while the rename still waits for the lock.
        wait_for("kompose taking the signal",
                 lambda: "running error and finally hooks" in output(logs))
    finally:
        for holder in held:
            holder.release()
    code = proc.wait(timeout=120)
    text = output(logs)
    assert len(pg.rows(name)) == 30, text  # the swap ran to its end
    assert leftovers(pg, name) == set() and journal(folder) is None
    assert catalog(pg, name)["datallowconn"] is True
    line = summary_line(text, "shop")
    assert "cancelled" not in line.lower(), text
    assert "cancelled" not in text.lower(), text
    assert f"{name} replaced by" in text
    assert code in (0, 128 + sig), text


# -- 12.2: the target's own settings survive an import ---------------------------------------
@needs_root
def test_import_keeps_owner_acl_settings_limit_and_comment(tmp_path: Path,
                                                           pg: Postgres) -> None:
    tag = uuid.uuid4().hex[:8]
    owner, reader = f"kt_own_{tag}", f"kt_rd_{tag}"
    flag = f"kt_{tag}.flag"  # a custom setting: PostgreSQL 15 lets only whom it grants
    superuser(f'CREATE ROLE "{owner}" NOLOGIN; GRANT "{owner}" TO "{pg.user}"; '
              f'CREATE ROLE "{reader}" NOLOGIN; GRANT SET ON PARAMETER {flag} TO "{owner}";')
    name = pg.new_name()
    try:
        icu = _has_icu(pg)
        with pg.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0'
                         + (" LOCALE_PROVIDER icu ICU_LOCALE 'de-DE'" if icu else ""))
        with pg.connect(name) as conn:
            conn.execute("CREATE TABLE items (id int PRIMARY KEY, label text NOT NULL)")
            conn.execute("INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 20) g")
        with pg.connect() as conn:
            for statement in (
                    f'ALTER DATABASE "{name}" OWNER TO "{owner}"',
                    f'REVOKE CONNECT ON DATABASE "{name}" FROM PUBLIC',
                    f'GRANT CONNECT, TEMPORARY ON DATABASE "{name}" TO "{reader}"',
                    f'GRANT CREATE ON DATABASE "{name}" TO "{reader}" WITH GRANT OPTION',
                    f'ALTER DATABASE "{name}" SET search_path TO "$user", public, x',
                    f'ALTER DATABASE "{name}" SET {flag} = \'on, really\'',
                    f'ALTER ROLE "{pg.user}" IN DATABASE "{name}" SET work_mem = \'8MB\'',
                    f'ALTER DATABASE "{name}" CONNECTION LIMIT 17',
                    f'COMMENT ON DATABASE "{name}" IS \'the shop\'\'s database\''):
                conn.execute(statement)
        before = _settings(pg, name)
        assert before["owner"] == owner and "=Tc/" not in before["acl"]  # PUBLIC revoked
        root = stack_root(tmp_path, pg, shop=name)
        assert kompose(root, "shop", "db:export").code == 0
        with pg.connect(name) as conn:
            conn.execute("DELETE FROM items")
        r = kompose(root, "shop", "db:import")
        assert r.code == 0, r.all
        assert len(pg.rows(name)) == 20
        after = _settings(pg, name)
        assert after == before
    finally:
        with pg.connect() as conn:
            drop_database(conn, name)
            for left in leftovers(pg, name):
                drop_database(conn, left)
        superuser(f'REVOKE SET ON PARAMETER {flag} FROM "{owner}"; '
                  f'DROP ROLE IF EXISTS "{owner}"; DROP ROLE IF EXISTS "{reader}";')


def _has_icu(pg: Postgres) -> bool:
    with pg.connect() as conn:
        return bool(conn.execute("SELECT 1 FROM pg_collation WHERE collprovider = 'i' "
                                 "LIMIT 1").fetchall())


def _settings(pg: Postgres, name: str) -> dict[str, Any]:
    with pg.connect() as conn:
        row = conn.execute(
            "SELECT pg_get_userbyid(d.datdba), d.datconnlimit, d.datallowconn,"
            " shobj_description(d.oid, 'pg_database'), d.datcollate, d.datctype,"
            " d.datlocprovider, d.daticulocale, pg_encoding_to_char(d.encoding),"
            " ARRAY(SELECT x::text FROM unnest(d.datacl) x ORDER BY 1),"
            " ARRAY(SELECT coalesce(pg_get_userbyid(NULLIF(s.setrole, 0)), '*') || ':' ||"
            "       array_to_string(s.setconfig, '|') FROM pg_db_role_setting s"
            "       WHERE s.setdatabase = d.oid ORDER BY 1)"
            " FROM pg_database d WHERE d.datname = %s", (name,)).fetchone()
    assert row is not None
    keys = ("owner", "connlimit", "allowconn", "comment", "collate", "ctype", "provider",
            "icu", "encoding", "acl", "settings")
    return dict(zip(keys, row, strict=True))


# -- 12.3: UTC names, old local-time names still read and ordered right ---------------------
@pytest.mark.parametrize("zone", ["Pacific/Kiritimati", "Pacific/Honolulu"])
def test_dump_names_are_utc_and_old_local_names_order_right(tmp_path: Path, pg: Postgres,
                                                            zone: str) -> None:
    name = pg.new_name()
    pg.create(name, rows=5)
    root = stack_root(tmp_path, pg, shop=name)
    folder = root / "shop"
    env = {"TZ": zone}
    before = datetime.now(timezone.utc).replace(microsecond=0)
    r = kompose(root, "shop", "db:export", env=env)
    after = datetime.now(timezone.utc)
    assert r.code == 0, r.all
    (made,) = dump_files(folder)
    match = re.fullmatch(re.escape(name) + r"_(\d{8}_\d{6})Z\.sql", made)
    assert match, made
    stamp = datetime.strptime(match[1], "%Y%m%d_%H%M%S").replace(tzinfo=timezone.utc)
    assert before <= stamp <= after  # UTC, whatever the local zone
    text = (folder / made).read_text()
    local = ZoneInfo(zone)
    now = datetime.now(timezone.utc)
    # Two dumps whose names sort the wrong way round as text: a Z name and an old
    # local-time name (no Z) from this zone.
    if zone == "Pacific/Kiritimati":  # UTC+14: an hour-old local name looks newest
        z_when, local_when, newest = now, now - timedelta(hours=1), "z"
    else:  # UTC-10: an hour-old local name looks older than a two-hour-old Z name
        z_when, local_when, newest = now - timedelta(hours=2), now - timedelta(hours=1), "local"
    z_name = f"{name}_{z_when.astimezone(timezone.utc):%Y%m%d_%H%M%S}Z_7.sql"
    local_name = f"{name}_{local_when.astimezone(local):%Y%m%d_%H%M%S}.sql"
    (folder / made).unlink()
    (folder / z_name).write_text(text.replace("item ", "from z "))
    (folder / local_name).write_text(text.replace("item ", "from local "))
    assert (sorted([z_name, local_name])[-1] == local_name) == (newest == "z")  # text lies
    r = kompose(root, "shop", "db:list", env=env)
    assert r.code == 0
    shown = [n for line in r.out.splitlines() for n in (z_name, local_name) if n in line]
    assert shown == ([local_name, z_name] if newest == "z" else [z_name, local_name]), r.out
    assert "INCOMPLETE" not in r.out
    r = kompose(root, "shop", "db:import", env=env)
    assert r.code == 0, r.all
    assert pg.rows(name)[0][1] == f"from {newest} 1"
    r = kompose(root, "shop", "db:cleanup", "--keep", "1", env=env)
    assert r.code == 0, r.all
    assert dump_files(folder) == [z_name if newest == "z" else local_name]


# -- 12.4: DB_NAME never leads outside the stack folder; long names --------------------------
@pytest.mark.parametrize("stem", ["../kt", "kt/../../esc", "..", "/kt"])
def test_db_name_with_slashes_and_dots_stays_in_the_stack_folder(
        tmp_path: Path, server: Postgres, stem: str) -> None:
    pg = server
    name = pg.new_name(stem)
    pg.create(name, rows=6)
    root = stack_root(tmp_path, pg, shop=name)
    folder = root / "shop"

    def tree() -> set[str]:
        return {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")
                if folder not in (p, *p.parents)}

    outside = tree()
    for compress in ((), ("--compress",)):
        r = kompose(root, "shop", "db:export", *compress)
        assert r.code == 0, r.all
    assert tree() == outside
    made = dump_files(folder)
    assert len(made) == 2 and all(not n.startswith(".") and "/" not in n for n in made)
    with pg.connect(name) as conn:
        conn.execute("DELETE FROM items")
    r = kompose(root, "shop", "db:import")
    assert r.code == 0, r.all
    assert len(pg.rows(name)) == 6
    r = kompose(root, "shop", "db:list")
    assert f"shop ({name}): 2 dumps" in r.out, r.out
    r = kompose(root, "shop", "db:cleanup")
    assert r.code == 0 and len(dump_files(folder)) == 1
    assert tree() == outside


LONG = "ä" * 27  # 54 bytes; with "_" and 8 hex digits the name is 63 bytes


def test_long_non_ascii_name_gets_valid_distinct_scratch_names(tmp_path: Path,
                                                               server: Postgres) -> None:
    pg = server
    name = f"{LONG}_{uuid.uuid4().hex[:8]}"
    assert len(name.encode()) == 63
    pg.created.append(name)
    try:
        pg.create(name, rows=9)
        root = stack_root(tmp_path, pg, shop=name)
        assert kompose(root, "shop", "db:export").code == 0
        with pg.connect(name) as conn:
            conn.execute("DELETE FROM items")
        r = kompose(root, "shop", "db:import")
        assert r.code == 0, r.all
        assert len(pg.rows(name)) == 9
        used = set(re.findall(r'"([^"]*_kompose_(?:new|old)_[0-9a-f]{8})"', r.err))
        assert len(used) == 2, r.err
        assert all(len(u.encode()) <= 63 for u in used)
        assert name not in used
        assert leftovers(pg, name) == set()
        assert {d for d in pg.databases() if d in used} == set()
    finally:
        with pg.connect() as conn:
            for left in leftovers(pg, name):
                drop_database(conn, left)


def test_long_names_sharing_a_prefix_never_touch_each_others_leftovers(
        tmp_path: Path, pg: Postgres) -> None:
    """Scratch names are cut to fit 63 bytes: two databases whose names differ only after
    the cut must still get names of their own, or recovering one would rename or drop the
    other's data."""
    tag = uuid.uuid4().hex[:8]
    a, b = f"{'ö' * 24}_a_{tag}", f"{'ö' * 24}_b_{tag}"  # 59 bytes, same first 48
    token = "0123abcd"
    assert scratch_names(a, token)[0] != scratch_names(b, token)[0]
    assert scratch_names(a, token)[1] != scratch_names(b, token)[1]
    # b's import was interrupted: its previous copy waits under b's aside name.
    b_aside = scratch_names(b, token)[1]
    pg.created.extend([b_aside, a])
    try:
        with pg.connect() as conn:
            conn.execute(f'CREATE DATABASE "{b_aside}"')
        with pg.connect(b_aside) as conn:
            conn.execute("CREATE TABLE items (id int PRIMARY KEY, label text NOT NULL)")
            conn.execute("INSERT INTO items VALUES (1, 'b''s real data')")
        root = stack_root(tmp_path, pg, shop=a)
        r = kompose(root, "shop", "db:recover")
        assert r.code == 0, r.all
        assert b_aside in pg.databases(), r.err  # not renamed into a, not dropped
        assert a not in pg.databases(), r.err
        assert pg.rows(b_aside) == [(1, "b's real data")]
    finally:
        with pg.connect() as conn:
            for db in (b_aside, a):
                drop_database(conn, db)


# -- 12.5: DB_PASSWORD from a pre hook ----------------------------------------------------------
def test_db_password_written_by_a_pre_hook_reaches_pg_dump_and_psql(tmp_path: Path,
                                                                    server: Postgres) -> None:
    pg = server
    name = pg.new_name()
    pg.create(name, rows=8)
    hooks = "".join(
        f"hook_pre_db_{cmd}() {{ printf 'DB_PASSWORD=%s\\n' '{pg.password}' "
        f'>>"$KOMPOSE_ENV_FILE"; stat -c %a "$KOMPOSE_ENV_FILE" >{cmd}-envmode; }}\n'
        for cmd in ("export", "import"))
    root = stack_root(tmp_path, pg, hooks=hooks, shop=name)
    env_file = root / "shop" / ".env"
    env_file.write_text(env_file.read_text().replace(f"DB_PASSWORD={pg.password}",
                                                     "DB_PASSWORD=Wrong-Pw-31"))
    r = kompose(root, "shop", "db:export")
    assert r.code == 0, r.all
    assert len(dump_files(root / "shop")) == 1
    with pg.connect(name) as conn:
        conn.execute("DELETE FROM items")
    r = kompose(root, "shop", "db:import")
    assert r.code == 0, r.all
    assert len(pg.rows(name)) == 8
    for cmd in ("export", "import"):
        assert (root / "shop" / f"{cmd}-envmode").read_text().strip() == "600"
    assert pg.password not in r.all and "Wrong-Pw-31" not in r.all
    # Without the hook the stack's own (wrong) password is what reaches the server.
    (root / "shop" / "hooks.sh").unlink()
    r = kompose(root, "shop", "db:export")
    assert r.code == 1 and "password authentication failed" in r.err


# -- 11.6: faults ------------------------------------------------------------------------------
@contextlib.contextmanager
def mounted(*args: str, target: Path) -> Iterator[None]:
    subprocess.run(["mount", *args, str(target)], check=True, capture_output=True)
    try:
        yield
    finally:
        for _ in range(50):
            if subprocess.run(["umount", str(target)], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            subprocess.run(["umount", "-l", str(target)], capture_output=True)


def no_dump_left(folder: Path) -> None:
    names = os.listdir(folder)
    assert not [n for n in names if any(k in n for k in (".sql", ".dump", ".dir"))
                or n.endswith(".partial")], names


@needs_root
@pytest.mark.parametrize("options", [(), ("--compress",), ("--compress", "zstd"),
                                     ("--format", "custom"), ("--format", "directory")],
                         ids=["plain", "gzip", "zstd", "custom", "directory"])
def test_full_disk_during_export_one_clear_line_next_stack_runs(
        tmp_path: Path, server: Postgres, options: tuple[str, ...]) -> None:
    pg = server
    name = pg.new_name()
    pg.create(name, rows=10)
    with pg.connect(name) as conn:  # ~300 KB of dump that gzip cannot shrink below 64 KB
        conn.execute("INSERT INTO items SELECT g, (SELECT string_agg(md5(random()::text "
                     "|| g || i), '') FROM generate_series(1, 16) i) "
                     "FROM generate_series(11, 600) g")
    full = tmp_path / "root" / "a_full"
    full.mkdir(parents=True)
    with mounted("-t", "tmpfs", "-o", "size=64k", "tmpfs", target=full):
        root = stack_root(tmp_path, pg, a_full=name, b_next=name)
        r = kompose(root, "*", "db:export", *options)
        assert r.code == 1, r.all
        assert "Traceback" not in r.all and "internal error" not in r.all
        line = summary_line(r.err, "a_full")
        assert "no space left on device" in line.lower(), r.err
        no_dump_left(full)
        assert len(find_dumps(root / "b_next", name)) == 1  # the next stack still ran
        assert "1 succeeded, 1 failed" in r.err


@needs_root
@pytest.mark.parametrize("lock_there", [True, False], ids=["lock-file-there", "no-lock-file"])
def test_read_only_stack_folder_during_export(tmp_path: Path, pg: Postgres,
                                              lock_there: bool) -> None:
    name = pg.new_name()
    pg.create(name, rows=10)
    root = stack_root(tmp_path, pg, a_ro=name, b_next=name)
    ro = root / "a_ro"
    if lock_there:
        (ro / LOCK_NAME).touch(mode=0o600)
    with mounted("--bind", str(ro), target=ro):
        subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], check=True,
                       capture_output=True)
        before = sorted(os.listdir(ro))
        r = kompose(root, "*", "db:export")
        assert r.code == 1, r.all
        assert "Traceback" not in r.all and "internal error" not in r.all
        line = summary_line(r.err, "a_ro")
        assert "Read-only file system" in line, r.err
        assert sorted(os.listdir(ro)) == before
        assert len(dump_files(root / "b_next")) == 1
        assert "1 succeeded, 1 failed" in r.err


@pytest.mark.parametrize("kind", ["symlink", "dangling symlink", "hard link", "folder",
                                  "fifo"])
def test_lock_file_that_is_not_ours_is_a_clear_error_and_clobbers_nothing(
        tmp_path: Path, pg: Postgres, kind: str) -> None:
    name = pg.new_name()
    pg.create(name, rows=3)
    root = stack_root(tmp_path, pg, shop=name)
    folder = root / "shop"
    (folder / f"{name}_20200101_000000Z.sql").write_text(
        pg.complete_dump("SELECT 1;\n"))
    victim = tmp_path / "precious.txt"
    lock = folder / LOCK_NAME
    if kind == "symlink":
        victim.write_text("precious\n")
        lock.symlink_to(victim)
    elif kind == "dangling symlink":
        lock.symlink_to(victim)
    elif kind == "hard link":
        victim.write_text("precious\n")
        os.link(victim, lock)
    elif kind == "folder":
        lock.mkdir()
    else:
        os.mkfifo(lock)
    stamp = victim.stat().st_mtime_ns if victim.exists() else None
    expected = {"symlink": "is a symlink", "dangling symlink": "is a symlink",
                "folder": "is a folder"}.get(kind, "not a plain file of its own")
    for command in ("db:export", "db:import", "db:cleanup", "db:recover"):
        r = kompose(root, "shop", command, timeout=60)
        assert r.code == 1, (command, r.all)
        assert f"cannot use the lock file {lock}: {expected}" in r.err, (command, r.err)
        assert "Traceback" not in r.all
    if kind == "dangling symlink":
        assert not victim.exists()
    elif kind in ("symlink", "hard link"):
        assert victim.read_text() == "precious\n" and victim.stat().st_mtime_ns == stamp
    assert len(dump_files(folder)) == 1  # cleanup deleted nothing


def test_cleanup_fails_at_once_while_an_import_holds_the_lock(tmp_path: Path,
                                                              pg: Postgres) -> None:
    name = pg.new_name()
    pg.create(name, rows=4)
    hooks = ("hook_pre_db_import() { touch started; "
             "while [ ! -e release ]; do sleep 0.05; done; }\n")
    root = stack_root(tmp_path, pg, hooks=hooks, shop=name)
    folder = root / "shop"
    for _ in range(2):
        assert kompose(root, "shop", "db:export").code == 0
    older, newer = dump_files(folder)
    first, logs = start(root, "shop", "db:import", str(folder / older))
    try:
        wait_for("the import's pre hook", lambda: (folder / "started").exists())
        r = kompose(root, "shop", "db:cleanup", "--keep", "1", timeout=60)
        assert first.poll() is None  # "at once": the import still holds the lock
        assert r.code == 1, r.all
        assert f"shop is busy: kompose db:import (pid {first.pid}" in r.err
        assert (folder / older).exists()
    finally:
        (folder / "release").touch()
    assert first.wait(timeout=120) == 0, output(logs)
    assert dump_files(folder) == [older, newer]


@pytest.mark.parametrize("lock", ["row", "object"])
def test_blocked_swap_gives_up_and_puts_the_target_back(tmp_path: Path, server: Postgres,
                                                        lock: str) -> None:
    """Another transaction holds the target's pg_database entry for the whole import (a
    superuser's row lock: every ALTER waits; or an open COMMENT: only the rename waits).
    With KOMPOSE_DB_LOCK_TIMEOUT=1 the import gives up and the target is as it was."""
    pg = server
    name, root, folder = exported_then_trimmed(tmp_path, pg, rows=12, keep=5)
    holder: Any
    if lock == "object":
        holder = object_lock(pg, name)
    elif isinstance(pg, ContainerPostgres):  # its role is the container server's superuser
        holder = Holder(pg, f"SELECT datname FROM pg_database WHERE datname = '{name}' "
                            "FOR UPDATE")
    else:
        if not IS_ROOT:
            pytest.skip("needs root for runuser")
        holder = SuperSession()
        holder.run("BEGIN;")
        assert holder.run(f"SELECT datname FROM pg_database WHERE datname = '{name}' "
                          "FOR UPDATE;") == [name]
    try:
        # Without a bound this would hit the subprocess time-out and fail the test.
        r = kompose(root, "shop", "db:import", env={"KOMPOSE_DB_LOCK_TIMEOUT": "1"},
                    timeout=120)
    finally:
        holder.release() if isinstance(holder, Holder) else holder.close()
    assert r.code == 1, r.all
    assert "lock timeout" in summary_line(r.err, "shop"), r.err
    assert "Traceback" not in r.all
    assert len(pg.rows(name)) == 5
    assert catalog(pg, name)["datallowconn"] is True
    assert leftovers(pg, name) == set()
    assert journal(folder) is None, journal(folder)
    assert "INTERRUPTED" not in kompose(root, "--list").out


def test_dump_with_connect_to_the_live_target(tmp_path: Path, server: Postgres) -> None:
    pg = server
    name = pg.new_name()
    pg.create(name, rows=15)
    root = stack_root(tmp_path, pg, shop=name)
    folder = root / "shop"
    assert kompose(root, "shop", "db:export").code == 0
    (dump,) = dump_files(folder)
    text = (folder / dump).read_text()
    with pg.connect(name) as conn:
        conn.execute("INSERT INTO items VALUES (99, 'only in the live database')")
    live = pg.rows(name)
    # As pg_dump -C puts it (at the top), aimed at the live target.
    hostile = folder / "hostile.sql"
    hostile.write_text(f"\\connect {name}\nDROP TABLE items;\n" + text)
    r = kompose(root, "shop", "db:import", str(hostile))
    assert r.code == 1, r.all
    assert "\\connect" in summary_line(r.err, "shop"), r.err
    assert pg.rows(name) == live
    assert leftovers(pg, name) == set()
    # --force leaves the \connect out: the DROP runs in the scratch DB, where there is no
    # table yet, and the import fails there; the live target never saw it.
    r = kompose(root, "shop", "db:import", "--force", str(hostile))
    assert r.code == 1, r.all
    assert "--force: left out line 1 of hostile.sql (psql \\connect)" in r.err \
        or 'table "items" does not exist' in r.err, r.err
    assert 'table "items" does not exist' in r.err
    assert pg.rows(name) == live
    # The same with a DROP that succeeds in the scratch DB: the import completes with the
    # dump's rows, which it could not if the rest of the file had gone to the live target.
    hostile.write_text(f"\\connect {name}\nDROP TABLE IF EXISTS items;\n" + text)
    r = kompose(root, "shop", "db:import", "--force", str(hostile))
    assert r.code == 0, r.all
    assert "--force: left out line 1 of hostile.sql (psql \\connect)" in r.err
    assert pg.rows(name) == [row for row in live if row[0] != 99]
    assert leftovers(pg, name) == set()


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_dump_files_and_env_file_are_private_whatever_the_umask(tmp_path: Path,
                                                                pg: Postgres,
                                                                compress: bool) -> None:
    name = pg.new_name()
    pg.create(name, rows=3)
    hooks = 'hook_pre_db_export() { stat -c %a "$KOMPOSE_ENV_FILE" >envmode; }\n'
    root = stack_root(tmp_path, pg, hooks=hooks, shop=name)
    proc = subprocess.run(
        [sys.executable, "-m", "kompose_py", "--root", str(root), "shop", "db:export",
         *(["--compress"] if compress else [])],
        capture_output=True, text=True, timeout=120, preexec_fn=lambda: os.umask(0))
    assert proc.returncode == 0, proc.stderr
    (dump,) = dump_files(root / "shop")
    assert stat.S_IMODE(os.stat(root / "shop" / dump).st_mode) == 0o600
    assert (root / "shop" / "envmode").read_text().strip() == "600"
