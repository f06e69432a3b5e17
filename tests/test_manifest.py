"""The manifest beside a dump: written atomically, read back and validated, digests of files
and directories; row counts taken at the snapshot pg_dump dumps, while rows keep coming."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from kompose_py.db.manifest import (
    BEGIN_SNAPSHOT,
    EXPORT_SNAPSHOT,
    ROW_SECURITY_OFF,
    TABLES,
    DumpFile,
    Manifest,
    ManifestError,
    count_differences,
    count_rows_sql,
    counts_from_rows,
    digest,
    manifest_path,
    mismatch,
    read_manifest,
    write_manifest,
)
from tests.conftest import Postgres


def _manifest(**changes: Any) -> Manifest:
    base: dict[str, Any] = dict(
        dump="shop_20240101_000000Z.dump", format="custom", compression="gzip", size=3,
        sha256="a" * 64, database="shop", created="2024-01-01T00:00:00Z",
        pg_dump_version="15.18", server_version="15.18", row_counts={"public.items": 3})
    base.update(changes)
    return Manifest(**base)


def test_write_read_roundtrip_and_atomic(tmp_path: Path) -> None:
    dump = tmp_path / "shop_20240101_000000Z.dump"
    dump.write_bytes(b"abc")
    m = _manifest(files=(DumpFile("toc.dat", 10),), snapshot="00000003-0000001B-1",
                  plain_size=None, compressed_by="pg_dump")
    path = write_manifest(dump, m)
    assert path == manifest_path(dump) == tmp_path / "shop_20240101_000000Z.dump.json"
    assert read_manifest(path) == m
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert sorted(p.name for p in tmp_path.iterdir()) == [dump.name, path.name]
    data = json.loads(path.read_text())
    assert data["manifest"] == 1 and data["files"] == [{"name": "toc.dat", "size": 10}]
    # a later kompose's extra keys are ignored
    data["new_key"] = {"x": 1}
    path.write_text(json.dumps(data))
    assert read_manifest(path) == m


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.pop("sha256"), "no 'sha256'"),
    (lambda d: d.update(sha256="xyz"), "'sha256' is not 64 hex digits"),
    (lambda d: d.update(size="3"), "'size' is str, not int"),
    (lambda d: d.update(size=True), "'size' is bool, not int"),
    (lambda d: d.update(format="tar"), "unknown format 'tar'"),
    (lambda d: d.update(manifest=9), "manifest version 9 is newer"),
    (lambda d: d["row_counts"].update({"public.x": -1}), "row count of 'public.x'"),
    (lambda d: d.update(files=["toc.dat"]), "'files' holds a str"),
])
def test_invalid_manifests_fail_with_one_line(tmp_path: Path, change: Any, message: str) -> None:
    data = json.loads(_manifest().to_json())
    change(data)
    path = tmp_path / "x.dump.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=re.escape(message)) as info:
        read_manifest(path)
    assert info.value.message.startswith("x.dump.json: ") and "\n" not in info.value.message


def test_unreadable_and_not_json(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text('{"manifest": 1,\n "dump": ')
    with pytest.raises(ManifestError, match=r"^d.json: not JSON \(") as info:
        read_manifest(path)
    assert "\n" not in info.value.message
    with pytest.raises(ManifestError, match="unreadable"):
        read_manifest(tmp_path / "missing.json")


def test_digest_of_a_directory_is_defined_by_names_sizes_contents(tmp_path: Path) -> None:
    folder = tmp_path / "d.dir"
    folder.mkdir()
    (folder / "toc.dat").write_bytes(b"TOC")
    (folder / "3001.dat.gz").write_bytes(b"\x1f\x8bdata")
    (folder / "blobs.toc").write_bytes(b"")
    sha, size, files = digest(folder)
    expected = hashlib.sha256()
    for name in sorted(["toc.dat", "3001.dat.gz", "blobs.toc"]):
        content = (folder / name).read_bytes()
        expected.update(name.encode() + b"\0" + len(content).to_bytes(8, "big") + content)
    assert sha == expected.hexdigest()
    assert size == 3 + 6 and [f.name for f in files] == ["3001.dat.gz", "blobs.toc", "toc.dat"]
    # moving a byte from one file to the next changes the digest
    (folder / "blobs.toc").write_bytes(b"T")
    (folder / "toc.dat").write_bytes(b"OC")
    assert digest(folder)[0] != sha
    (folder / "sub").mkdir()
    with pytest.raises(ManifestError, match="not a regular file"):
        digest(folder)


def test_mismatch(tmp_path: Path) -> None:
    dump = tmp_path / "a.sql.gz"
    dump.write_bytes(b"0123456789")
    sha, size, _ = digest(dump)
    assert sha == hashlib.sha256(b"0123456789").hexdigest()
    good = _manifest(size=size, sha256=sha)
    assert mismatch(dump, good) is None
    dump.write_bytes(b"012345678")
    assert mismatch(dump, good) == "9 bytes, the manifest says 10"
    dump.write_bytes(b"0123456780")
    assert (mismatch(dump, good) or "").startswith("sha256 ")
    assert mismatch(dump, good, full=False) is None
    folder = tmp_path / "d.dir"
    folder.mkdir()
    (folder / "toc.dat").write_bytes(b"x")
    sha, size, files = digest(folder)
    m = _manifest(format="directory", size=size, sha256=sha, files=files)
    assert mismatch(folder, m) is None
    (folder / "1.dat").write_bytes(b"")
    assert mismatch(folder, m) == "1.dat is not in the manifest"
    (folder / "1.dat").unlink()
    (folder / "toc.dat").unlink()
    assert mismatch(folder, m) == "toc.dat is missing (the manifest lists it)"


def test_count_differences() -> None:
    assert count_differences({"a.t": 1}, {"a.t": 1}) == []
    assert count_differences({"a.t": 2, "a.u": 1}, {"a.t": 1, "a.v": 0}) == [
        "a.t: 1 rows restored, the dump had 2", "a.u: missing after the restore (the dump "
        "had 1 rows)", "a.v: 0 rows restored, not in the manifest"]


_IDENT = r'"(?:[^"]|"")*"|[^".\s]+'


def _unquote(ident: str) -> str:
    return ident[1:-1].replace('""', '"') if ident.startswith('"') else ident


def _copy_counts(dump: Path) -> dict[str, int]:
    """Rows pg_dump wrote per table: the lines between each COPY and its \\. line."""
    text = subprocess.run(["pg_restore", "--data-only", "-f", "-", str(dump)],
                          capture_output=True, text=True, check=True).stdout
    counts: dict[str, int] = {}
    current = None
    for line in text.splitlines():
        if current is None:
            match = re.match(rf"COPY ({_IDENT})\.({_IDENT}) \(", line)
            if match:
                current = ".".join(_unquote(part) for part in match.groups())
                counts[current] = 0
        elif line == "\\.":
            current = None
        else:
            counts[current] += 1
    return counts


def test_counts_at_the_dump_snapshot_while_rows_are_inserted(pg: Postgres, tmp_path: Path
                                                            ) -> None:
    import psycopg

    name = pg.new_name("kt_manifest")
    pg.create(name, rows=2000)
    with pg.connect(name) as conn:
        conn.execute('CREATE SCHEMA "Odd ""schema"""')
        conn.execute('CREATE TABLE "Odd ""schema""".events (id serial, at timestamptz '
                     'DEFAULT now())')
        conn.execute('INSERT INTO "Odd ""schema""".events SELECT FROM generate_series(1, 50)')
        conn.execute("CREATE TABLE parted (id int, k int) PARTITION BY RANGE (k)")
        conn.execute("CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (100)")
        conn.execute("INSERT INTO parted SELECT g, g % 100 FROM generate_series(1, 300) g")
        conn.execute("CREATE TEMP TABLE scratch (x int)")  # not the dump's

    stop = threading.Event()
    inserted = threading.Semaphore(0)
    errors: list[BaseException] = []

    def insert_rows() -> None:
        try:
            with pg.connect(name) as writer:
                n = 100000
                while not stop.is_set():
                    n += 1
                    writer.execute("INSERT INTO items VALUES (%s, 'late')", (n,))
                    writer.execute('INSERT INTO "Odd ""schema""".events DEFAULT VALUES')
                    writer.execute("INSERT INTO parted VALUES (%s, 5)", (n,))
                    inserted.release()
        except BaseException as exc:  # reported by the test
            errors.append(exc)
            inserted.release()

    session = psycopg.connect(host=pg.host, port=pg.port, user=pg.user, password=pg.password,
                              dbname=name, autocommit=True)
    thread = threading.Thread(target=insert_rows)
    try:
        session.execute(BEGIN_SNAPSHOT)
        session.execute(ROW_SECURITY_OFF)
        row = session.execute(EXPORT_SNAPSHOT).fetchone()
        assert row is not None
        snapshot = row[0]
        thread.start()
        for _ in range(20):  # rows committed after the snapshot, before pg_dump starts
            inserted.acquire()
        dump = tmp_path / "d.dump"
        subprocess.run(["pg_dump", "-Fc", f"--snapshot={snapshot}", "-f", str(dump), "-h",
                        pg.host, "-p", pg.port, "-U", pg.user, name],
                       env={**os.environ, "PGPASSWORD": pg.password}, check=True)
        for _ in range(20):  # and more while pg_dump ran or after it
            inserted.acquire()
        tables = [(s, t) for s, t in session.execute(TABLES).fetchall()]
        sql = count_rows_sql(tables)
        assert sql is not None
        counts = counts_from_rows(session.execute(sql).fetchall())
        session.execute("COMMIT")
    finally:
        stop.set()
        if thread.is_alive():
            thread.join()
        session.close()
    assert not errors, errors
    assert counts == {"public.items": 2000, 'Odd "schema".events': 50, "public.parted_1": 300}
    assert _copy_counts(dump) == counts
    with pg.connect(name) as conn:  # the test could fail: rows did arrive meanwhile
        now = conn.execute("SELECT count(*) FROM items").fetchone()
        assert now is not None and now[0] >= 2040


def test_count_sql_quotes_names() -> None:
    assert count_rows_sql([]) is None
    sql = count_rows_sql([("we'ird", 'ta"ble')])
    assert sql == """SELECT 'we''ird.ta"ble', count(*) FROM "we'ird"."ta""ble\""""
