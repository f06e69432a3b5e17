"""Database operations against the real PostgreSQL server with a password role."""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from kompose_py.db.export import _publish
from kompose_py.db.postgres.formats import PLAIN
from tests.conftest import (
    COMPOSE,
    ContainerPostgres,
    Postgres,
    dump_text,
    make_stacks,
    run_kompose,
    run_on_terminal,
)

HOOKS = r"""
log() { printf '%s|%s|%s\n' "$KOMPOSE_HOOK" "$PWD" "$*" >>"$HOOK_LOG"; }
hook_pre_db_export() { log "$@"; }
hook_post_db_export() { log "$@"; test -f "$1"; }
hook_pre_db_import() { log "$@"; }
hook_post_db_import() { log "$@"; }
"""


def dump_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()
                  if ".sql" in p.name and not p.name.endswith(".json"))  # not manifests


def db_root(tmp_path: Path, pg: Postgres, **stacks: str) -> Path:
    """Stacks named by keyword, each with the given DB_NAME (empty: no database)."""
    tree: dict = {}
    for stack, name in stacks.items():
        tree[stack] = {"compose.yaml": pg.compose, "hooks.sh": HOOKS}
        if name:
            tree[stack][".env"] = pg.env_text(name)
    return make_stacks(tmp_path / "root", tree)


def exported(tmp_path: Path, pg: Postgres, rows: int) -> tuple[str, Path, Path]:
    """A database with ``rows`` items, its stack, and one dump of it: (name, root, folder)."""
    name = pg.new_name()
    pg.create(name, rows=rows)
    root = db_root(tmp_path, pg, shop=name)
    assert kompose(root, "shop", "db:export").code == 0
    return name, root, root / "shop"


def kompose(root: Path, *args: str, log: Path | None = None, **kw):
    env = {"HOOK_LOG": str(log or root.parent / "hooks.log"), **kw.pop("env", {})}
    return run_kompose("--root", str(root), *args, env=env, **kw)


# -- which stacks ---------------------------------------------------------------------------
def test_only_stacks_with_their_own_db_name_are_database_stacks(tmp_path: Path,
                                                                pg: Postgres) -> None:
    name = pg.new_name()
    pg.create(name)
    root = db_root(tmp_path, pg, shop=name, web="")
    # A DB_NAME in the root .env is a shared default, not a database of every stack.
    (root / ".env").write_text(f"DB_NAME={name}\n")
    r = kompose(root, "*", "db:export")
    assert r.code == 0, r.err
    assert "⊘ web skipped: no DB_NAME in its .env" in r.err
    assert "Summary: 1 succeeded, 0 failed, 1 skipped out of 2 stacks" in r.err
    assert len(dump_files(root / "shop")) == 1
    assert dump_files(root / "web") == []
    # -e DB_NAME makes a stack a database stack, with the connection from the merged env.
    (root / ".env").write_text(pg.env_text("unused").replace("DB_NAME=unused\n", ""))
    r = kompose(root, "-e", f"DB_NAME={name}", "web", "db:export")
    assert r.code == 0, r.err
    assert len(dump_files(root / "web")) == 1


# -- export ---------------------------------------------------------------------------------
def test_export_names_reports_and_runs_hooks(tmp_path: Path, server: Postgres) -> None:
    pg = server
    name = pg.new_name()
    pg.create(name, rows=500)
    root = db_root(tmp_path, pg, shop=name)
    log = tmp_path / "hooks.log"
    r = kompose(root, "shop", "db:export", log=log)
    assert r.code == 0, r.err
    (dump,) = dump_files(root / "shop")
    stamp = dump.removeprefix(f"{name}_").removesuffix(".sql")
    when = datetime.strptime(stamp, "%Y%m%d_%H%M%SZ").replace(tzinfo=timezone.utc)
    assert abs((when - datetime.now(timezone.utc)).total_seconds()) < 60  # UTC, marked Z
    assert f"wrote {dump} (" in r.err and " KB in " in r.err
    if isinstance(pg, ContainerPostgres):
        assert f"via container {pg.container}" in r.err
        assert f"PGPASSWORD=*** docker exec -e PGPASSWORD -e PGCONNECT_TIMEOUT=10 " \
               f"-e KOMPOSE_EXEC_MARK {pg.container} pg_dump --no-password -h localhost" in r.err
    else:
        assert "PGPASSWORD=*** pg_dump --no-password -h" in r.err
    assert os.stat(root / "shop" / dump).st_mode & 0o777 == 0o600
    assert "COPY public.items" in (root / "shop" / dump).read_text()
    assert log.read_text().splitlines() == [
        f"hook_pre_db_export|{root / 'shop'}|",
        f"hook_post_db_export|{root / 'shop'}|{root / 'shop' / dump}",
    ]
    # Nothing temporary is left behind.
    assert [p.name for p in (root / "shop").iterdir() if p.name.endswith(".partial")] == []


def test_two_exports_in_one_second_both_survive(tmp_path: Path, server: Postgres) -> None:
    pg = server
    folder = tmp_path / "s"
    folder.mkdir()
    when = datetime(2025, 10, 8, 6, 50, 1, tzinfo=timezone.utc)
    paths = []
    for content in (b"first", b"second"):
        tmp = folder / f".tmp-{content.decode()}"
        tmp.write_bytes(content)
        paths.append(_publish(tmp, "shop", folder, when, PLAIN))
    assert [p.name for p in paths] == ["shop_20251008_065001Z.sql",
                                       "shop_20251008_065001Z_2.sql"]
    assert [p.read_bytes() for p in paths] == [b"first", b"second"]
    assert sorted(p.name for p in folder.iterdir()) == [p.name for p in paths]
    # And for real, back to back through the CLI: two files, none overwritten.
    name = pg.new_name()
    pg.create(name)
    root = db_root(tmp_path, pg, shop=name)
    for _ in range(2):
        assert kompose(root, "shop", "db:export").code == 0
    assert len(dump_files(root / "shop")) == 2


@pytest.mark.parametrize("fault", ["wrong password", "missing database", "unreachable",
                                   "no pg_dump"])
def test_failed_export_leaves_no_dump_and_says_one_clear_line(tmp_path: Path, server: Postgres,
                                                              fault: str) -> None:
    pg = server
    name = pg.new_name()
    pg.create(name)
    root = db_root(tmp_path, pg, shop=name)
    env_file = root / "shop" / ".env"
    text = env_file.read_text()
    env: dict[str, str] = {}
    expected = ""
    in_container = isinstance(pg, ContainerPostgres)
    where = f"{pg.user} in container {pg.container}" if in_container else \
        f"{pg.host}:{pg.port} as {pg.user}"
    if fault == "wrong password":
        env_file.write_text(text.replace(f"DB_PASSWORD={pg.password}", "DB_PASSWORD=WrongPw-9"))
        expected = f"cannot connect to {where}"
    elif fault == "missing database":
        env_file.write_text(text.replace(f"DB_NAME={name}", "DB_NAME=kt_does_not_exist"))
        expected = 'database "kt_does_not_exist" does not exist'
    elif fault == "unreachable" and in_container:
        # The database's container is stopped: said as such, not as a DNS failure.
        stopped = f"kt-stopped-{os.getpid()}-{time.monotonic_ns()}"
        subprocess.run(["docker", "create", "--name", stopped, "busybox:latest"], check=True,
                       capture_output=True)
        env_file.write_text(text + f"DB_CONTAINER={stopped}\n")
        expected = f"DB_CONTAINER={stopped}: no running container of that name"
    elif fault == "unreachable":
        env_file.write_text(text.replace(f"DB_PORT={pg.port}", "DB_PORT=1"))
        expected = f"cannot connect to {pg.host}:1 as {pg.user}:"
    elif in_container:
        # A container without PostgreSQL's tools.
        other = f"kt-nopg-{os.getpid()}-{time.monotonic_ns()}"
        subprocess.run(["docker", "run", "-d", "--init", "--name", other, "busybox:latest",
                        "sleep", "120"], check=True, capture_output=True)
        env_file.write_text(text + f"DB_CONTAINER={other}\n")
        expected = f"container {other}"
    else:
        bin_dir = tmp_path / "bin-without-pg"  # bash only: /bin holds pg_dump on Debian
        bin_dir.mkdir()
        (bin_dir / "bash").symlink_to("/bin/bash")
        env = {"PATH": f"{bin_dir}:{os.path.dirname(sys.executable)}"}
        expected = "cannot run pg_dump: program not found"
    try:
        r = kompose(root, "shop", "db:export", env=env)
    finally:
        for made in ("stopped", "other"):
            if made in locals():
                subprocess.run(["docker", "rm", "-f", locals()[made]], capture_output=True)
    assert r.code == 1
    assert expected in r.err
    assert "Traceback" not in r.err
    assert "WrongPw-9" not in r.err + r.out and pg.password not in r.err + r.out
    summary_lines = [x for x in r.err.splitlines() if x.startswith("  ✗ shop")]
    assert len(summary_lines) == 1 and expected in summary_lines[0]
    assert dump_files(root / "shop") == []
    assert "hook_post_db_export" not in (tmp_path / "hooks.log").read_text()


def test_export_killed_mid_way_leaves_nothing_and_password_is_never_in_argv(
        tmp_path: Path, server: Postgres) -> None:
    pg = server
    name = pg.new_name()
    pg.create(name, rows=10)
    pg.fill(name, 400_000)  # enough data that pg_dump runs for a while
    root = db_root(tmp_path, pg, shop=name)
    proc = subprocess.Popen([sys.executable, "-m", "kompose_py", "--root", str(root), "shop",
                             "db:export"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "HOOK_LOG": str(tmp_path / "hooks.log")})
    pid = None
    in_container = isinstance(pg, ContainerPostgres)
    argvs: list[bytes] = []  # every pg_dump command line seen (docker's and the container's)
    deadline = time.monotonic() + 30

    def inner_seen() -> bool:  # the pg_dump inside the container, seen from the host
        return not in_container or any(a.startswith(b"pg_dump") for a in argvs)

    while (pid is None or not inner_seen()) and time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                if b"pg_dump" not in b" ".join(argv) or name.encode() not in b" ".join(argv):
                    continue
                argvs.append(b" ".join(argv))
                client = argv[0].endswith(b"docker") if in_container else \
                    argv[0].endswith(b"pg_dump")
                if client and str(root).encode() in os.readlink(entry / "cwd").encode():
                    pid = int(entry.name)
                    environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
        time.sleep(0.01)
    assert pid is not None, "pg_dump was never seen running"
    assert argvs and all(pg.password.encode() not in a for a in argvs)
    assert f"PGPASSWORD={pg.password}".encode() in environ
    if in_container:
        assert any(a.startswith(b"pg_dump") for a in argvs), argvs  # the one in the container
    os.kill(pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "pg_dump ✗ exit 137" in err.decode()
    assert dump_files(root / "shop") == []
    assert pg.password not in (out + err).decode()


def test_compressed_export_imports_back(tmp_path: Path, server: Postgres) -> None:
    pg = server
    name = pg.new_name()
    pg.create(name, rows=300)
    before = pg.rows(name)
    root = db_root(tmp_path, pg, shop=name)
    r = kompose(root, "shop", "db:export", "--compress")
    assert r.code == 0, r.err
    (dump,) = dump_files(root / "shop")
    assert dump.endswith(".sql.gz")
    assert b"COPY public.items" in gzip.decompress((root / "shop" / dump).read_bytes())
    with pg.connect(name) as conn:
        conn.execute("DELETE FROM items WHERE id > 5")
    r = kompose(root, "shop", "db:import")
    assert r.code == 0, r.err
    assert pg.rows(name) == before


class SlowLink:
    """A TCP relay to the real server that passes the server's bytes at ~2 MB/s: pg_dump then
    runs long enough for the byte counter to show, without a 300 MB database."""

    def __init__(self, host: str, port: int, rate: int = 2 << 20) -> None:
        import socket

        self.target, self.rate = (host, port), rate
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket

        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for src, dst, slow in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(target=self._pipe, args=(src, dst, slow), daemon=True).start()

    def _pipe(self, src: object, dst: object, slow: bool) -> None:
        import socket

        assert isinstance(src, socket.socket) and isinstance(dst, socket.socket)
        chunk = 32 << 10
        try:
            while data := src.recv(chunk):
                dst.sendall(data)
                if slow:
                    time.sleep(len(data) / self.rate)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.server.close()


def test_live_byte_counter_on_a_terminal(tmp_path: Path, pg: Postgres) -> None:
    name = pg.new_name()
    pg.create(name, rows=10)
    pg.fill(name, 6_000)  # ~3 MB, at ~2 MB/s through the slow link
    link = SlowLink(pg.host, int(pg.port))
    try:
        root = db_root(tmp_path, pg, shop=name)
        env_file = root / "shop" / ".env"
        env_file.write_text(env_file.read_text().replace(f"DB_PORT={pg.port}",
                                                         f"DB_PORT={link.port}"))
        code, shown = run_on_terminal("--root", str(root), "shop", "db:export",
                                      env={"HOOK_LOG": str(tmp_path / "log")})
    finally:
        link.close()
    assert code == 0, shown
    assert "shop: " in shown and " MB written" in shown


# -- import ---------------------------------------------------------------------------------
def test_import_picks_newest_by_name_not_mtime(tmp_path: Path, server: Postgres) -> None:
    pg = server
    name, root, folder = exported(tmp_path, pg, rows=3)
    (real,) = dump_files(folder)
    newest = folder / f"{name}_29991231_235959.sql"
    newest.write_text((folder / real).read_text().replace("item 3", "from the newest"))
    older = folder / f"{name}_20000101_000000.sql"
    older.write_text(dump_text("this is not SQL at all;"))
    os.utime(older, (time.time() + 3600, time.time() + 3600))  # newest mtime, oldest name
    r = kompose(root, "shop", "db:import")
    assert r.code == 0, r.err
    assert pg.rows(name)[-1] == (3, "from the newest")
    assert f"hook_pre_db_import|{folder}|{newest}" in (tmp_path / "hooks.log").read_text()


def test_explicit_file_only_for_one_stack(tmp_path: Path, pg: Postgres) -> None:
    a, b = pg.new_name(), pg.new_name()
    pg.create(a, rows=2)
    pg.create(b, rows=2)
    root = db_root(tmp_path, pg, shop=a, blog=b)
    assert kompose(root, "shop", "db:export").code == 0
    (dump,) = dump_files(root / "shop")
    r = kompose(root, "*", "db:import", f"shop/{dump}")
    assert r.code == 2
    assert "a dump file can go to one stack only, and the pattern selects 2 (blog, shop)" in r.err
    assert not (tmp_path / "hooks.log").exists() or "import" not in \
        (tmp_path / "hooks.log").read_text()
    r = kompose(root, "shop", "db:import", "shop/nope.sql")
    assert r.code == 2 and "dump file 'shop/nope.sql' not found" in r.err
    # Relative to the root (as kompose.sh users type it), into a stack of another name.
    with pg.connect(b) as conn:
        conn.execute("DELETE FROM items")
    r = kompose(root, "blog", "db:import", f"shop/{dump}")
    assert r.code == 0, r.err
    assert pg.rows(b) == pg.rows(a)


FAULTY_DUMPS = {
    "error near the end": lambda good: good.replace(
        "\\.\n", "\\.\n\nINSERT INTO items VALUES (1, 'duplicate key at the very end');\n", 1),
    "another schema": lambda good: dump_text("CREATE TABLE other (x int);\n"
                                             "INSERT INTO missing_table VALUES (1);\n"),
    "truncated gzip": None,
}


@pytest.mark.parametrize("fault", list(FAULTY_DUMPS))
def test_failed_import_leaves_target_exactly_as_it_was(tmp_path: Path, server: Postgres,
                                                       fault: str) -> None:
    pg = server
    name, root, folder = exported(tmp_path, pg, rows=50)
    (good,) = dump_files(folder)
    with pg.connect(name) as conn:
        conn.execute("UPDATE items SET label = 'changed since the dump' WHERE id <= 10")
    before = pg.rows(name)
    bad = folder / f"{name}_29990101_000000.sql"
    text = (folder / good).read_text()
    make = FAULTY_DUMPS[fault]
    if make is None:
        bad = bad.with_name(bad.name + ".gz")
        data = gzip.compress(text.encode())
        bad.write_bytes(data[: len(data) // 2])
    else:
        bad.write_text(make(text))
    # An incomplete file is never "the newest dump": the truncated one is named explicitly.
    r = kompose(root, "shop", "db:import", *([str(bad)] if make is None else []))
    assert r.code == 1, r.err
    assert pg.rows(name) == before
    # No scratch database left behind (other databases on the server are not ours to judge).
    assert {d for d in pg.databases() if d.startswith(name)} == {name}
    log_file = tmp_path / "hooks.log"
    log = log_file.read_text() if log_file.exists() else ""
    assert "hook_post_db_import" not in log
    if fault == "truncated gzip":
        # Refused before anything is touched: not even the pre hook runs.
        assert "refusing" in r.err and "truncated or damaged gzip" in r.err
        assert "hook_pre_db_import" not in log
    else:
        assert "hook_pre_db_import" in log
        assert "the dump did not load:" in r.err and "ERROR:" in r.err


def test_import_does_not_wait_forever_for_connected_clients(tmp_path: Path,
                                                            pg: Postgres) -> None:
    name, root, _ = exported(tmp_path, pg, rows=20)
    with pg.connect(name) as conn:
        conn.execute("DELETE FROM items WHERE id > 1")
    client = pg.connect(name)  # an application holding a session on the target
    client.execute("SELECT 1")
    stop = threading.Event()

    def reconnecting_app() -> None:  # and one that keeps coming back
        while not stop.is_set():
            try:
                with pg.connect(name) as c:
                    c.execute("SELECT pg_sleep(0.05)")
            except Exception:
                pass

    worker = threading.Thread(target=reconnecting_app)
    worker.start()
    try:
        # "Not forever": a hang would hit this subprocess time-out and fail the test.
        r = kompose(root, "shop", "db:import", timeout=120)
    finally:
        stop.set()
        worker.join()
    assert r.code == 0, r.err
    assert len(pg.rows(name)) == 20
    with pytest.raises(Exception):  # noqa: B017 - its session was ended
        client.execute("SELECT 1")
    client.close()


@pytest.mark.parametrize("stem", ["Shop-DB", "with space", "quo\"te'd", "x\"; DROP DATABASE y; --",
                                  "a=b"])
def test_awkward_database_names_work_and_are_never_injected(tmp_path: Path, server: Postgres,
                                                            stem: str) -> None:
    pg = server
    name = pg.new_name(stem)
    pg.create(name, rows=7)
    root = make_stacks(tmp_path / "root", {"shop": {"compose.yaml": COMPOSE}})
    env = {"HOOK_LOG": str(tmp_path / "log")}
    conn_args = ["-e", f"DB_HOST={pg.host}", "-e", f"DB_PORT={pg.port}", "-e",
                 f"DB_USER={pg.user}", "-e", f"DB_PASSWORD={pg.password}", "-e", f"DB_NAME={name}"]
    r = run_kompose("--root", str(root), *conn_args, "shop", "db:export", env=env)
    assert r.code == 0, r.err
    with pg.connect(name) as conn:
        conn.execute("DELETE FROM items")
    r = run_kompose("--root", str(root), *conn_args, "shop", "db:import", env=env)
    assert r.code == 0, r.err
    assert len(pg.rows(name)) == 7
    assert "postgres" in pg.databases()


# -- cleanup and list -----------------------------------------------------------------------
def test_cleanup_keeps_newest_by_name_and_touches_nothing_else(tmp_path: Path,
                                                               pg: Postgres) -> None:
    root = db_root(tmp_path, pg, shop="shopdb")
    folder = root / "shop"
    names = ["shopdb_20240101_000000.sql", "shopdb_20250101_000000.sql.gz",
             "shopdb_20250101_000000_2.sql", "shopdb_20230101_000000.sql"]
    for i, n in enumerate(names):
        if n.endswith(".gz"):
            (folder / n).write_bytes(gzip.compress(dump_text(n).encode()))
        else:
            (folder / n).write_text(dump_text(n))
        os.utime(folder / n, (1e9 + (10 - i) * 1000, 1e9 + (10 - i) * 1000))
    others = ["notes.txt", "shopdb_20260101_000000.schema.txt", "otherdb_20200101_000000.sql",
              ".shopdb_20990101_000000.sql.1234.partial", "shopdb_latest.sql"]
    for n in others:
        (folder / n).write_text("keep me")
    r = kompose(root, "shop", "db:cleanup", "--dry-run", "--keep", "2")
    assert r.code == 0
    assert "would delete shopdb_20230101_000000.sql" in r.err
    assert len(list(folder.iterdir())) == len(names) + len(others) + 3  # nothing deleted
    r = kompose(root, "shop", "db:cleanup", "--keep=2")
    assert r.code == 0, r.err
    left = sorted(p.name for p in folder.iterdir())
    assert "shopdb_20250101_000000_2.sql" in left and "shopdb_20250101_000000.sql.gz" in left
    assert "shopdb_20240101_000000.sql" not in left and "shopdb_20230101_000000.sql" not in left
    assert all(n in left for n in others)
    r = kompose(root, "shop", "db:cleanup")  # default: keep 1
    assert r.code == 0
    assert [n for n in os.listdir(folder) if n.startswith("shopdb_2") and ".sql" in n
            and "schema" not in n] == ["shopdb_20250101_000000_2.sql"]
    for bad in (["--keep", "0"], ["--keep", "x"], ["--bogus"]):
        assert kompose(root, "shop", "db:cleanup", *bad).code == 2


def test_db_list_shows_size_and_age(tmp_path: Path, pg: Postgres) -> None:
    root = db_root(tmp_path, pg, shop="shopdb", web="")
    (root / "shop" / "shopdb_20240101_000000.sql").write_bytes(b"x" * 2048)
    r = kompose(root, "*", "db:list")
    assert r.code == 0
    assert "shop (shopdb): 1 dump" in r.out
    line = next(x for x in r.out.splitlines() if "shopdb_20240101_000000.sql" in x)
    assert "2.0 KB" in line and "d ago" in line
    assert "INCOMPLETE: no pg_dump completion trailer" in line  # b"x" * 2048 is no dump
    assert "web: no DB_NAME" in r.out


# -- hooks, locking, dry-run ----------------------------------------------------------------
def test_failing_pre_hook_stops_the_operation(tmp_path: Path, pg: Postgres) -> None:
    name = pg.new_name()
    pg.create(name)
    root = db_root(tmp_path, pg, shop=name)
    (root / "shop" / "hooks.sh").write_text("hook_pre_db_export() { echo refusing >&2; return 4; }"
                                            "\nhook_post_db_export() { touch post-ran; }\n")
    r = kompose(root, "shop", "db:export")
    assert r.code == 1
    assert "✗ shop failed at pre (exit 4" in r.err
    assert dump_files(root / "shop") == []
    assert not (root / "shop" / "post-ran").exists()


def test_second_kompose_on_the_same_stack_fails_at_once(tmp_path: Path, server: Postgres) -> None:
    pg = server
    name = pg.new_name()
    pg.create(name)
    root = db_root(tmp_path, pg, shop=name)
    # The first holds the lock until the test releases it: no fixed sleep to wait out.
    (root / "shop" / "hooks.sh").write_text(
        "hook_pre_db_export() { touch started; while [ ! -e release ]; do sleep 0.05; done; }\n")
    first = subprocess.Popen([sys.executable, "-m", "kompose_py", "--root", str(root), "shop",
                              "db:export"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while not (root / "shop" / "started").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    for command in ("db:import", "db:export"):
        second = kompose(root, "shop", command)
        # "At once": it is done while the first still holds the lock (its hook waits for
        # the release file, which only the test writes).
        assert first.poll() is None
        assert second.code == 1
        assert f"shop is busy: kompose db:export (pid {first.pid}" in second.err
        assert "✗ shop failed (exit 1, " in second.err  # not "at pre": no hook ran
    (root / "shop" / "release").touch()
    assert first.wait(timeout=60) == 0
    assert len(dump_files(root / "shop")) == 1


def test_dry_run_touches_neither_files_nor_databases(tmp_path: Path, server: Postgres) -> None:
    pg = server
    name = pg.new_name()
    pg.create(name, rows=5)
    root = db_root(tmp_path, pg, shop=name)
    (root / "shop" / f"{name}_20250101_000000.sql").write_text(dump_text())
    before_files = sorted(os.listdir(root / "shop"))
    before_dbs = {d for d in pg.databases() if d.startswith(name)}
    for command in ("db:export", "db:import", "db:cleanup"):
        r = kompose(root, "-n", "shop", command)
        assert r.code == 0, r.err
        assert pg.password not in r.err + r.out
    assert sorted(os.listdir(root / "shop")) == before_files
    assert {d for d in pg.databases() if d.startswith(name)} == before_dbs
    assert not (tmp_path / "hooks.log").exists()
    r = kompose(root, "-n", "shop", "db:import")
    # The exact commands, with where they run: the host's psql, or docker exec.
    via = ("docker exec -i -e PGPASSWORD -e PGCONNECT_TIMEOUT=10 -e KOMPOSE_EXEC_MARK "
           f"{pg.container} ") if isinstance(pg, ContainerPostgres) else ""
    assert f"PGPASSWORD=*** {via}psql --no-password" in r.err, r.err
    assert "ON_ERROR_STOP=1 --single-transaction" in r.err
    assert f'SQL: CREATE DATABASE "{name}_kompose_new_' in r.err
    assert f"a real run reads {name}'s owner, locale, privileges and settings first" in r.err
    # Both renames in one transaction.
    assert re.search(rf'SQL: BEGIN; ALTER DATABASE "{name}" RENAME TO "{name}_kompose_old_'
                     rf'\w+"; ALTER DATABASE "{name}_kompose_new_\w+" RENAME TO "{name}"; '
                     rf'COMMIT;', r.err), r.err
    r = kompose(root, "-n", "shop", "db:export")
    assert f"PGPASSWORD=*** {via.replace('-i ', '')}pg_dump --no-password" in r.err, r.err
    # The post hook is listed with the argument it would get: the planned dump path.
    planned = re.escape(str(root / "shop" / name))
    assert re.search(rf"\[HOOK\] post_db_export {planned}_\d{{8}}_\d{{6}}Z\.sql  would run",
                     r.err), r.err


def test_example_database_stack_end_to_end(tmp_path: Path, docker_engine: None) -> None:
    """stacks/db as shipped: PostgreSQL in a container (DB_HOST=postgres), its four hooks,
    a schema snapshot beside each dump, export and import through the container."""
    import shutil
    import uuid

    from tests.conftest import PG_IMAGE, REPO, _image_there, _missing

    if not _image_there(PG_IMAGE):
        _missing(f"the PostgreSQL image {PG_IMAGE} (run scripts/setup-env.sh)")
    root = tmp_path / "examples"
    shutil.copytree(REPO / "stacks", root, ignore=shutil.ignore_patterns("*.sql.gz", "*Z.sql",
                                                                         "*.txt", ".kompose.lock"))
    tag = uuid.uuid4().hex[:8]
    unique = ["-e", f"COMPOSE_PROJECT_NAME=kt-exdb-{tag}", "-e", f"NETWORK_NAME=kt-exnet-{tag}",
              "-e", f"PG_IMAGE={PG_IMAGE}"]
    try:
        r = run_kompose("--root", str(root), *unique, "db", "up", "-d", "--wait")
        assert r.code == 0, r.err
        r = run_kompose("--root", str(root), *unique, "db", "db:export")
        assert r.code == 0, r.err
        assert "via container kt-exdb-" in r.err and "answers to DB_HOST=postgres" in r.err
        assert "schema snapshot:" in r.out
        snapshots = list((root / "db").glob("*.schema.txt"))
        assert len(snapshots) == 1 and "CREATE TABLE public.notes" in snapshots[0].read_text()
        r = run_kompose("--root", str(root), *unique, "db", "db:import")
        assert r.code == 0, r.err
        assert f"newest schema snapshot: ./{snapshots[0].name}" in r.out
        assert "kompose_example now holds" in r.out and ": 2 notes" in r.out
        assert "example-only-pw" not in r.out + r.err
    finally:
        run_kompose("--root", str(root), *unique, "db", "down", "-v", "-t", "1")
        subprocess.run(["docker", "network", "rm", f"kt-exnet-{tag}"], capture_output=True)


def test_json_report_of_db_commands_names_dumps_and_hides_the_password(tmp_path: Path,
                                                                      server: Postgres) -> None:
    pg = server
    import json

    name = pg.new_name()
    pg.create(name)
    root = db_root(tmp_path, pg, shop=name, wrong=name, web="")
    (root / "wrong" / ".env").write_text(
        pg.env_text(name).replace(f"DB_PASSWORD={pg.password}", "DB_PASSWORD=Wrong-Secret-7"))
    r = kompose(root, "--json", "*", "db:export")
    assert r.code == 1
    doc = json.loads(r.out)
    stacks = {s["stack"]: s for s in doc["stacks"]}
    (dump,) = dump_files(root / "shop")
    assert stacks["shop"]["files"] == [str(root / "shop" / dump)]
    assert stacks["shop"]["status"] == "success"
    assert stacks["web"]["status"] == "skipped"
    assert stacks["wrong"]["status"] == "failed"
    assert "cannot connect to" in stacks["wrong"]["message"]
    assert "password authentication failed" in stacks["wrong"]["message"]
    for secret in (pg.password, "Wrong-Secret-7"):
        assert secret not in r.out and secret not in r.err


def test_db_hooks_get_pg_variables_of_what_the_pre_hooks_set(tmp_path: Path, pg: Postgres) -> None:
    """A pre hook that decrypts the real password (and says where the server is) writes them to
    $KOMPOSE_ENV_FILE; the dump uses them, and so must the PG* variables of the later hooks.
    They used to be computed before the pre hooks ran: PGHOST/PGPASSWORD of the .env."""
    name = pg.new_name()
    pg.create(name)
    root = make_stacks(tmp_path / "root", {"shop": {
        "compose.yaml": pg.compose,
        ".env": (f"DB_NAME={name}\nDB_HOST=placeholder.invalid\nDB_PORT={pg.port}\n"
                 f"DB_USER={pg.user}\nDB_PASSWORD=encrypted-placeholder\n"),
        "hooks.sh": (
            'hook_pre_db_export() { printf "DB_HOST=%s\\nDB_PASSWORD=%s\\n" "$REAL_HOST" '
            '"$REAL_PW" >"$KOMPOSE_ENV_FILE"; }\n'
            'hook_post_db_export() {\n'
            '  printf "%s|%s|%s\\n" "$PGHOST" "$([ "$PGPASSWORD" = "$REAL_PW" ] && echo real)" '
            '"$DB_HOST" >"$KOMPOSE_STACK_DIR/seen"\n'
            '  psql -X -At -c "SELECT 42" >>"$KOMPOSE_STACK_DIR/seen"\n}\n')}})
    r = kompose(root, "shop", "db:export", env={"REAL_HOST": pg.host, "REAL_PW": pg.password})
    assert r.code == 0, r.err
    seen = (root / "shop" / "seen").read_text().splitlines()
    # The hook's own psql reaches the server kompose dumped, with the decrypted password.
    assert seen == [f"{pg.host}|real|{pg.host}", "42"]
