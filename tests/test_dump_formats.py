"""Dump formats end to end, on the host's PostgreSQL 15 (host tools: pg_dump 15 has no lz4 or
zstd, kompose compresses plain dumps itself) and on PostgreSQL 17 in a container (docker exec:
pg_dump compresses itself): every format exported, listed and imported back; cut archives and
directories refused before anything is touched; a stopped directory export leaves no folder
under a dump name; the container's temporary folder is gone after every import."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from kompose_py.db.dumpfiles import find_dumps
from tests.conftest import (
    ContainerPostgres,
    Postgres,
    drop_database,
    make_stacks,
    run_kompose,
)
from tests.dbharness import (
    WAIT_LONG,
    Killed,
    blocked,
    kill_mid_swap,
    output,
    phase_is,
    put_right,
    sleeping,
    start,
    wait_for,
)


@pytest.fixture
def pg17(pg_container_newer: ContainerPostgres) -> ContainerPostgres:
    """PostgreSQL 17 in a container, shared with the session's other tests."""
    return pg_container_newer


@pytest.fixture(params=["host", "container"])
def where(request: pytest.FixtureRequest) -> Iterator[Postgres]:
    """PostgreSQL 15 through the host's tools, or 17 in a container through docker exec."""
    if request.param == "host":
        yield request.getfixturevalue("pg")
        return
    server = replace(request.getfixturevalue("pg17"), created=[])
    yield server
    with server.connect() as conn:
        for name in server.databases():
            if any(name == c or name.startswith(c[:40] + "_kompose_") for c in server.created):
                drop_database(conn, name)


def setup(tmp_path: Path, pg: Postgres, rows: int = 300) -> tuple[Path, Path, str]:
    name = pg.new_name("kf")
    pg.create(name, rows=rows)
    with pg.connect(name) as conn:  # a second table with a secondary index, as apps have
        conn.execute("CREATE TABLE notes (id serial PRIMARY KEY, item int, body text)")
        conn.execute("CREATE INDEX notes_item ON notes (item)")
        conn.execute("INSERT INTO notes (item, body) SELECT g % 50, md5(g::text) "
                     "FROM generate_series(1, 500) g")
    root = make_stacks(tmp_path / "root", {"shop": {"compose.yaml": pg.compose,
                                                    ".env": pg.env_text(name)}})
    return root, root / "shop", name


def kompose(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = run_kompose("--root", str(root), *args, timeout=180)
    return subprocess.CompletedProcess(args, result.code, result.out, result.err)


def state(pg: Postgres, name: str) -> tuple[int, int, bool]:
    with pg.connect(name) as conn:
        items = conn.execute("SELECT count(*) FROM items").fetchone()
        notes = conn.execute("SELECT count(*) FROM notes").fetchone()
        index = conn.execute("SELECT 1 FROM pg_indexes WHERE indexname = 'notes_item'"
                             ).fetchone()
    assert items is not None and notes is not None
    return items[0], notes[0], index is not None


def mine(pg: Postgres, name: str) -> set[str]:
    """The databases of this test (the target, scratch or set-aside copies)."""
    return {d for d in pg.databases() if d.startswith(name)}


def container_temp(pg: Postgres) -> list[str]:
    """kompose's temporary folders left in the server's container."""
    if not isinstance(pg, ContainerPostgres):
        return []
    out = subprocess.run(["docker", "exec", pg.container, "sh", "-c",
                          "ls -a /tmp | grep '^kompose' || true"],
                         capture_output=True, text=True, check=True).stdout
    return out.split()


# (export options, the suffix of the file it writes)
FORMATS = [
    ((), ".sql"),
    (("--compress",), ".sql.gz"),
    (("--compress", "zstd"), ".sql.zst"),
    (("--compress=lz4:3",), ".sql.lz4"),
    (("--format", "custom"), ".dump"),
    (("--format", "custom", "--compress", "gzip:1"), ".dump"),
    (("--format", "directory", "--jobs", "2"), ".dir"),
]
NEWER_ONLY = [  # pg_dump 16+ writes lz4/zstd into archives itself
    (("--format", "custom", "--compress", "zstd"), ".dump"),
    (("--format", "directory", "--compress", "lz4"), ".dir"),
]


def test_every_format_round_trips(tmp_path: Path, where: Postgres) -> None:
    pg = where
    root, folder, name = setup(tmp_path, pg)
    container = isinstance(pg, ContainerPostgres)
    cases = FORMATS + (NEWER_ONLY if container else [])
    made: list[tuple[tuple[str, ...], Path]] = []
    for options, suffix in cases:
        before = {d.path for d in find_dumps(folder, name)}
        result = kompose(root, "--json", "shop", "db:export", *options)
        assert result.returncode == 0, result.stdout + result.stderr
        (new,) = {d.path for d in find_dumps(folder, name)} - before
        assert new.name.endswith(suffix) and new.name.startswith(name + "_"), new.name
        assert new.is_dir() == (suffix == ".dir")
        made.append((options, new))
        shown = result.stderr
        if "zstd" in " ".join(options) or "lz4" in " ".join(options):
            # kompose compresses only where the pg_dump that runs cannot (15 on the host)
            assert ("by kompose" in shown) == (not container and suffix.startswith(".sql")), \
                shown
    assert not [p for p in folder.iterdir() if p.name.startswith(".") and "partial" in p.name]
    assert len(find_dumps(folder, name)) == len(cases)
    listing = json.loads(kompose(root, "--json", "shop", "db:list").stdout)
    listed = {d["file"]: d for s in listing["stacks"] for d in s["dumps"]}
    assert len(listed) == len(cases), listing
    assert all(d["complete"] for d in listed.values()), listing

    for options, path in made:
        # The method inside, read back from the dump itself (an archive's header): what was
        # asked, whoever compressed it.
        asked = " ".join(options)
        for method in ("gzip", "lz4", "zstd"):
            if method in asked:
                manifest = json.loads(Path(f"{path}.json").read_text())
                assert manifest["compression"] == method, (options, manifest)
    for options, path in made:
        with pg.connect(name) as conn:
            conn.execute("DELETE FROM items WHERE id > 10")
            conn.execute("DROP INDEX notes_item")
        result = kompose(root, "shop", "db:import", str(path), "--jobs", "2")
        assert result.returncode == 0, (options, result.stderr)
        assert state(pg, name) == (300, 500, True), options
        loader = "pg_restore" if path.suffix in (".dump", ".dir") else "psql"
        assert f" {loader} --no-password" in result.stderr, result.stderr
        assert container_temp(pg) == []
    # A custom archive with one job: in a container it streams in on stdin, no copy.
    custom = next(path for options, path in made if options == ("--format", "custom"))
    with pg.connect(name) as conn:
        conn.execute("DELETE FROM items WHERE id > 10")
    result = kompose(root, "shop", "db:import", str(custom), "--jobs", "1")
    assert result.returncode == 0 and state(pg, name) == (300, 500, True), result.stderr
    (line,) = [x for x in result.stderr.splitlines() if " pg_restore --no-password" in x]
    assert line.endswith(f" < {custom.name}") == container, line
    assert "--jobs=1" not in line if container else "--jobs=1" in line
    # Without --jobs: the CPUs, at most 4.
    result = kompose(root, "-n", "shop", "db:import", str(made[-1][1]))
    assert f"--jobs={max(1, min(os.cpu_count() or 1, 4))}" in result.stderr, result.stderr
    # Every archive verifies, the newer server's lz4/zstd ones included.
    for options, path in made:
        if path.suffix in (".dump", ".dir"):
            result = kompose(root, "shop", "db:verify", str(path))
            assert result.returncode == 0 and "match the manifest" in result.stderr, \
                (options, result.stderr)
    assert container_temp(pg) == []
    # The newest complete dump is chosen whatever its format.
    result = kompose(root, "shop", "db:import")
    assert result.returncode == 0 and made[-1][1].name in result.stderr, result.stderr
    # Cleanup counts and deletes every format (a directory archive with its files).
    result = kompose(root, "shop", "db:cleanup", "--keep", "1")
    assert result.returncode == 0, result.stderr
    assert [d.path for d in find_dumps(folder, name)] == [made[-1][1]]


def test_custom_archive_with_zstd_needs_pg_dump_16(tmp_path: Path, pg: Postgres) -> None:
    """pg_dump 15 cannot put zstd inside an archive, and kompose compresses only a plain
    stream: a clear line, nothing written."""
    root, folder, _ = setup(tmp_path, pg, rows=5)
    result = kompose(root, "shop", "db:export", "--format", "custom", "--compress", "zstd")
    assert result.returncode == 1
    assert "version 15, which cannot write zstd into a custom archive" in result.stderr
    assert not [p for p in folder.iterdir() if p.name.startswith(name_prefix(folder))]


def name_prefix(folder: Path) -> str:
    return next(line.split("=", 1)[1] for line in (folder / ".env").read_text().splitlines()
                if line.startswith("DB_NAME="))


def test_bad_options_are_usage_errors(tmp_path: Path, pg: Postgres) -> None:
    root, _, _ = setup(tmp_path, pg, rows=5)
    for args in (("--format", "tar"), ("--compress", "brotli"), ("--compress=zstd:99",),
                 ("--jobs", "0")):
        result = kompose(root, "shop", "db:export", *args)
        assert result.returncode == 2, (args, result.stderr)
    env = root / "shop" / ".env"
    (root / "shop" / "hooks.sh").write_text(
        'hook_pre_db_export() { touch "$KOMPOSE_STACK_DIR/pre-ran"; }\n')
    env.write_text(env.read_text() + "DB_DUMP_FORMAT=zip\n")
    result = kompose(root, "shop", "db:export")
    assert result.returncode == 1, result.stderr
    assert "DB_DUMP_FORMAT='zip' (stack .env): expected one of plain, custom, directory" \
        in result.stderr, result.stderr
    assert not (root / "shop" / "pre-ran").exists()  # refused before its hooks
    env.write_text(env.read_text().replace("DB_DUMP_FORMAT=zip\n", ""))
    result = kompose(root, "shop", "db:export", "--jobs", "4")
    assert result.returncode == 0, result.stderr
    assert "warning: --jobs 4 is for --format directory" in result.stderr, result.stderr


def test_db_dump_format_from_the_env_file(tmp_path: Path, pg: Postgres) -> None:
    root, folder, name = setup(tmp_path, pg, rows=5)
    (root / ".env").write_text("DB_DUMP_FORMAT=custom\n")
    assert kompose(root, "shop", "db:export").returncode == 0
    assert kompose(root, "shop", "db:export", "--format", "plain").returncode == 0
    assert sorted(p.path.suffix for p in find_dumps(folder, name)) == [".dump", ".sql"]


def _cut(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) * 2 // 3])


def test_cut_archives_are_refused_before_anything_is_touched(tmp_path: Path,
                                                             where: Postgres) -> None:
    pg = where
    root, folder, name = setup(tmp_path, pg)
    made = []
    for options in (("--format", "custom", "--compress", "none"),
                    ("--format", "directory", "--compress", "none"),
                    ("--format", "directory")):
        before = {d.path for d in find_dumps(folder, name)}
        assert kompose(root, "shop", "db:export", *options).returncode == 0
        (new,) = {d.path for d in find_dumps(folder, name)} - before
        made.append(new)
    custom, plain_dir, packed_dir = made
    _cut(custom)
    tables = sorted(plain_dir.glob("[0-9]*.dat"), key=lambda p: p.stat().st_size)
    _cut(tables[-1])  # the biggest table's COPY data, cut
    packed = sorted(packed_dir.glob("[0-9]*.dat.gz"), key=lambda p: p.stat().st_size)
    packed[0].unlink()  # a data file missing
    with pg.connect(name) as conn:
        conn.execute("DELETE FROM items WHERE id > 10")
    before = mine(pg, name)
    for path, reason in ((custom, "cut off"), (plain_dir, "end-of-data"),
                         (packed_dir, "is missing")):
        result = kompose(root, "shop", "db:import", str(path))
        assert result.returncode == 1, result.stderr
        assert f"refusing {path.name}" in result.stderr and reason in result.stderr, \
            result.stderr
        assert "nothing was touched" in result.stderr
        assert mine(pg, name) == before == {name}
        assert state(pg, name) == (10, 500, True)
    listing = json.loads(kompose(root, "--json", "shop", "db:list").stdout)
    assert not any(d["complete"] for s in listing["stacks"] for d in s["dumps"])
    result = kompose(root, "shop", "db:import")  # no complete dump at all
    assert result.returncode == 1 and "no complete dump" in result.stderr
    assert container_temp(pg) == []


def test_failed_restore_leaves_the_target_and_no_temporary_folder(tmp_path: Path,
                                                                 where: Postgres) -> None:
    """A whole archive whose data does not load (a COPY line edited): pg_restore fails, the
    target is as it was, the scratch database and the container's folder are gone."""
    pg = where
    root, folder, name = setup(tmp_path, pg)
    assert kompose(root, "shop", "db:export", "--format", "directory", "--compress",
                   "none").returncode == 0
    (dump,) = find_dumps(folder, name)
    data = max(dump.path.glob("[0-9]*.dat"), key=lambda p: p.stat().st_size)
    text = data.read_bytes()
    data.write_bytes(b"not-a-number" + text[text.index(b"\t"):])
    Path(f"{dump.path}.json").unlink()  # its manifest would refuse the changed bytes first
    with pg.connect(name) as conn:
        conn.execute("DELETE FROM items WHERE id > 10")
    before = mine(pg, name)
    for jobs in ("1", "2"):
        result = kompose(root, "shop", "db:import", "--jobs", jobs)
        assert result.returncode == 1, result.stderr
        assert "the dump did not load" in result.stderr and "not-a-number" in result.stderr, \
            result.stderr
        assert mine(pg, name) == before == {name}
        assert state(pg, name) == (10, 500, True)
        assert container_temp(pg) == []


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGTERM-twice"])
def test_directory_export_stopped_midway_leaves_no_dump(tmp_path: Path, where: Postgres,
                                                        sig: str) -> None:
    """pg_dump -Fd -j 2 waits for a table's lock; kompose is stopped. No folder has a dump
    name; its partial folder is removed (also at once, on a second signal), and so is the
    container's temporary folder."""
    stopped_directory_export(tmp_path, where, sig)


def test_directory_export_killed_midway_leaves_no_dump(tmp_path: Path, where: Postgres) -> None:
    """SIGKILL: nothing can clean up, but the partial folder stays hidden, never a dump, and
    the next export removes it (and, in a container, the temporary folder there)."""
    stopped_directory_export(tmp_path, where, "SIGKILL")


@pytest.mark.parametrize("options", [("--format", "custom"), ("--compress", "zstd")],
                         ids=["custom", "zstd-by-kompose-or-pg_dump"])
def test_an_export_killed_midway_leaves_no_dump(tmp_path: Path, where: Postgres,
                                                options: tuple[str, ...]) -> None:
    """SIGKILL while pg_dump waits for a table's lock, for a custom archive and a compressed
    plain dump (compressed by kompose on the host, by pg_dump 17 in the container): no file
    has a dump name, the partial is hidden and named by the killed kompose, and the next
    export removes it and says so."""
    pg = where
    root, folder, name = setup(tmp_path, pg)
    holder = pg.connect(name)
    holder.execute("BEGIN")
    holder.execute("LOCK TABLE notes IN ACCESS EXCLUSIVE MODE")
    try:
        proc, logs = start(root, "shop", "db:export", *options)
        wait_for("pg_dump waiting for the table's lock",
                 lambda: pg_dump_waits(pg, name) and blocked(pg, "notes"))
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == -9, output(logs)
    finally:
        holder.close()
    assert find_dumps(folder, name) == []
    left = [p.name for p in folder.iterdir() if p.name.startswith(".")
            and p.name.endswith(".partial")]
    assert len(left) == 1 and left[0].endswith(f"-{proc.pid}.partial"), left
    again = kompose(root, "shop", "db:export", *options)
    assert again.returncode == 0, again.stderr
    assert f"removed {left[0]}, a partial dump left by a kompose that was killed" \
        in again.stderr, again.stderr
    assert not (folder / left[0]).exists() and len(find_dumps(folder, name)) == 1


def pg_dump_waits(pg: Postgres, name: str) -> bool:
    with pg.connect() as conn:
        return bool(conn.execute(
            "SELECT 1 FROM pg_stat_activity WHERE datname = %s AND application_name = "
            "'pg_dump' AND wait_event_type = 'Lock'", (name,)).fetchall())


def stopped_directory_export(tmp_path: Path, pg: Postgres, sig: str) -> None:
    root, folder, name = setup(tmp_path, pg)
    holder = pg.connect(name)
    holder.execute("BEGIN")
    holder.execute("LOCK TABLE notes IN ACCESS EXCLUSIVE MODE")
    try:
        proc, logs = start(root, "shop", "db:export", "--format", "directory", "--jobs", "2")
        # (kompose's own counting session at pg_dump's snapshot waits for that lock too)
        wait_for("pg_dump waiting for the table's lock",
                 lambda: pg_dump_waits(pg, name) and blocked(pg, "notes"))
        number = signal.SIGKILL if sig == "SIGKILL" else signal.SIGTERM
        os.kill(proc.pid, number)
        if sig == "SIGTERM-twice":
            os.kill(proc.pid, number)
        code = proc.wait(timeout=60)
        assert code == (-9 if sig == "SIGKILL" else 143), output(logs)
    finally:
        holder.close()
    assert find_dumps(folder, name) == []
    left = [p.name for p in folder.iterdir() if p.name.startswith(".") and ".dir." in p.name]
    if sig == "SIGKILL" and isinstance(pg, ContainerPostgres):
        # pg_dump writes into a temporary folder in the container (the host's partial folder
        # comes when it is copied out): named by this host and the killed pid, it stays ...
        assert left == [], left
        killed = container_temp(pg)
        assert [n for n in killed if f"-{proc.pid}." in n], killed
        # ... until the next use of a temporary folder there, which removes it and says so;
        # another host's, or an older kompose's, is not its to judge.
        theirs = [f"kompose.elsewhere-{proc.pid}.abc", "kompose.abcdefgh"]
        subprocess.run(["docker", "exec", pg.container, "mkdir",
                        *(f"/tmp/{n}" for n in theirs)], check=True)
        again = kompose(root, "shop", "db:export", "--format", "directory")
        assert again.returncode == 0, again.stderr
        for gone in killed:
            assert f"removing /tmp/{gone} in container {pg.container}, left by a kompose " \
                f"that was killed" in again.stderr, again.stderr
        assert sorted(container_temp(pg)) == sorted(theirs)
        subprocess.run(["docker", "exec", pg.container, "rm", "-rf",
                        *(f"/tmp/{n}" for n in theirs)], check=True)
    elif sig == "SIGKILL":
        # Nothing can clean up after SIGKILL: the partial folder stays hidden, never a dump
        # (named by its writer: this host and the killed pid) ...
        assert left and all(n.endswith(f"-{proc.pid}.partial") for n in left), left
        # ... until the next export here, which removes it and says so; a partial of another
        # host's export (a shared DB_DUMP_DIR) or of an older kompose is not its to judge.
        other = folder / f".{name}_20990101_000000Z.dir.elsewhere-{proc.pid}.partial"
        older = folder / f".{name}_20990101_000000Z.sql.{proc.pid}.partial"
        other.mkdir()
        older.write_text("x")
        again = kompose(root, "shop", "db:export", "--format", "directory")
        assert again.returncode == 0, again.stderr
        assert f"removed {left[0]}, a partial dump left by a kompose that was killed" \
            in again.stderr
        assert not (folder / left[0]).exists() and other.exists() and older.exists()
        other.rmdir()
        older.unlink()
    else:
        assert left == [], left
        wait_for("the container's temporary folder removed", lambda: container_temp(pg) == [],
                 limit=30)


NAP = """CREATE FUNCTION nap(i int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF current_database() <> '{name}' THEN PERFORM pg_sleep(3600); END IF;
    RETURN true;
END $$;
ALTER TABLE notes ADD CONSTRAINT napping CHECK (public.nap(item))"""


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_an_archive_import_killed_during_pg_restore_is_put_right(
        tmp_path: Path, where: Postgres, jobs: str) -> None:
    """SIGKILL while pg_restore loads a custom archive (its COPY sleeps in a CHECK that naps
    in any database but the source): the target is untouched, and the next db command drops
    the scratch database (ending the orphaned pg_restore's session) and the journal. In a
    container, one job streams the archive on stdin, two copy it into a temporary folder."""
    pg = where
    root, folder, name = setup(tmp_path, pg)
    with pg.connect(name) as conn:
        conn.execute(NAP.format(name=name))
    assert kompose(root, "shop", "db:export", "--format", "custom").returncode == 0
    with pg.connect(name) as conn:
        conn.execute("DELETE FROM items WHERE id > 10")
    proc, logs = start(root, "shop", "db:import", "--jobs", jobs, env=WAIT_LONG)
    try:
        def napping() -> dict[str, Any] | None:
            journal = phase_is(folder, proc, "load")()
            return journal if journal and sleeping(pg, journal["scratch"]) else None

        data = wait_for("pg_restore napping in the scratch database", napping)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
    assert "pg_restore" in output(logs)
    assert state(pg, name) == (10, 500, True)  # the target as it was
    killed = Killed("load", data, logs,
                    f"state: dropping the scratch database {data['scratch']}")
    put_right(pg, root, "shop", name, killed, "db:recover", rows=(10, 300), dumps_before=1)
    assert mine(pg, name) == {name}
    left = container_temp(pg)
    if jobs == "2" and isinstance(pg, ContainerPostgres):
        # The copy's folder, named by this host and the killed pid: the next command that
        # makes one there removes it (test_directory_export_killed_midway_leaves_no_dump).
        assert len(left) == 1 and f"-{proc.pid}." in left[0], left
        subprocess.run(["docker", "exec", pg.container, "rm", "-rf", f"/tmp/{left[0]}"],
                       check=True)
    else:
        assert left == []


@pytest.mark.parametrize(("point", "orphan"), [("swap", "done"), ("swap-second", "cut")])
def test_an_archive_import_killed_at_the_swap_is_put_right(
        tmp_path: Path, where: Postgres, point: str, orphan: str) -> None:
    """The swap after pg_restore is the swap after psql: killed there, the target's name
    never goes missing and the next import puts it right and loads the archive."""
    pg = where
    root, _, name = setup(tmp_path, pg)
    assert kompose(root, "shop", "db:export", "--format", "custom").returncode == 0
    with pg.connect(name) as conn:
        conn.execute("DELETE FROM items WHERE id > 10")
    killed = kill_mid_swap(pg, root, "shop", name, point, orphan)
    put_right(pg, root, "shop", name, killed, "db:import", rows=(10, 300), dumps_before=1)
    assert state(pg, name) == (300, 500, True)
    assert container_temp(pg) == []


def test_a_directory_dump_never_replaces_a_folder_at_its_name(tmp_path: Path,
                                                               pg: Postgres) -> None:
    """Folders (empty, as a claim would be, or not) already at the names of the next seconds:
    the export publishes beside them (``_2``) and leaves each as it was."""
    root, folder, name = setup(tmp_path, pg, rows=20)
    start_at = datetime.now(timezone.utc)
    taken = [folder / f"{name}_{start_at + timedelta(seconds=s):%Y%m%d_%H%M%S}Z.dir"
             for s in range(-2, 60)]
    for i, path in enumerate(taken):
        path.mkdir()
        if i % 2:
            (path / "theirs").write_text("keep me")
    result = kompose(root, "shop", "db:export", "--format", "directory")
    assert result.returncode == 0, result.stderr
    new = [p for p in folder.iterdir() if p.name.endswith("Z_2.dir")]
    assert len(new) == 1 and (new[0] / "toc.dat").is_file(), sorted(folder.iterdir())
    for i, path in enumerate(taken):
        assert sorted(x.name for x in path.iterdir()) == (["theirs"] if i % 2 else [])


@pytest.mark.parametrize("fallback", [False, True], ids=["renameat2", "mkdir-claim"])
def test_rename_noreplace_never_replaces(tmp_path: Path, fallback: bool,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """With renameat2(RENAME_NOREPLACE), and without it (the claim by mkdir)."""
    from kompose_py.db import transfer

    if fallback:
        monkeypatch.setattr(transfer, "_renameat2", lambda: None)
    source = tmp_path / ".partial"
    source.mkdir()
    (source / "toc.dat").write_text("new")
    empty, full, file = tmp_path / "empty", tmp_path / "full", tmp_path / "file"
    empty.mkdir()
    full.mkdir()
    (full / "toc.dat").write_text("old")
    file.write_text("old")
    for target in (empty, full, file):
        with pytest.raises(FileExistsError):
            transfer.rename_noreplace(source, target)
    assert (source / "toc.dat").read_text() == "new" and list(empty.iterdir()) == []
    assert (full / "toc.dat").read_text() == "old" and file.read_text() == "old"
    transfer.rename_noreplace(source, tmp_path / "free")
    assert (tmp_path / "free" / "toc.dat").read_text() == "new" and not source.exists()


def test_a_container_import_opens_three_sessions_whatever_its_statements(
        tmp_path: Path, pg17: ContainerPostgres) -> None:
    """A whole import in container mode, every ``docker exec`` counted: the advisory lock's
    psql, the one admin session (facts, scratch database, settings, swap, DROP) and the load
    — not one ``docker exec`` per statement."""
    import shutil

    pg = replace(pg17, created=[])
    root, _, name = setup(tmp_path, pg)
    assert kompose(root, "shop", "db:export").returncode == 0
    real = shutil.which("docker")
    assert real is not None
    bindir, log = tmp_path / "bin", tmp_path / "docker.log"
    bindir.mkdir()
    (bindir / "docker").write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {log}\n'
                                   f'exec {real} "$@"\n')
    (bindir / "docker").chmod(0o755)
    with pg.connect(name) as conn:
        conn.execute("DELETE FROM items WHERE id > 10")
    r = run_kompose("--root", str(root), "shop", "db:import",
                    env={"PATH": f"{bindir}:{os.environ['PATH']}"})
    assert r.code == 0 and state(pg, name) == (300, 500, True), r.err
    execs = [line for line in log.read_text().splitlines() if line.startswith("exec ")]
    assert len(execs) == 3 and all(" psql " in line for line in execs), execs
    assert sum("ON_ERROR_STOP=1 --single-transaction" in line for line in execs) == 1, execs
    with pg.connect() as conn:
        for made in mine(pg, name):
            drop_database(conn, made)


def test_container_admin_runs_one_session_and_keeps_errors_and_lock_timeout(
        tmp_path: Path, pg17: ContainerPostgres, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every statement of one command goes through one psql session in the container (one
    backend); a failed statement is a StepError with psql's error line, and the next one
    opens a new session that still has the lock_timeout."""
    from psycopg import sql

    from kompose_py.db.postgres.admin import ContainerAdmin
    from kompose_py.db.reach import ContainerAccess
    from kompose_py.db.settings import settings_from
    from kompose_py.errors import StepError
    from kompose_py.runner.run import Runner

    monkeypatch.setenv("KOMPOSE_DB_LOCK_TIMEOUT", "3")
    values = {"DB_NAME": "postgres", "DB_USER": pg17.user, "DB_PASSWORD": pg17.password,
              "PATH": os.environ["PATH"]}
    access = ContainerAccess(settings_from(values), pg17.container, "5432", "")
    said: list[str] = []
    admin = ContainerAdmin(access, Runner(), values, tmp_path, said.append)
    try:
        def backend() -> int:
            return int(admin.query(sql.SQL("SELECT pg_backend_pid() AS pid"))[0]["pid"])

        first = backend()
        admin.execute(sql.SQL("SELECT 1"))
        assert backend() == first
        assert admin.query(sql.SQL("SELECT current_setting('lock_timeout') AS t")) == \
            [{"t": "3s"}]
        with pytest.raises(StepError) as failed:
            admin.execute(sql.SQL("BEGIN; SELECT 1; SELECT 1/0; COMMIT"))
        assert "division by zero" in failed.value.message
        again = backend()
        assert again != first
        assert admin.query(sql.SQL("SELECT current_setting('lock_timeout') AS t")) == \
            [{"t": "3s"}]
        assert said == ["SQL: SELECT 1", "SQL: BEGIN; SELECT 1; SELECT 1/0; COMMIT"]
    finally:
        admin.close()
    assert pg17.password not in " ".join(said)
