"""Completeness of pg_dump archives (custom files and directories) made by the real pg_dump
15 on the host and pg_dump 17 in the kompose/postgres:17 image, whole and cut."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kompose_py.db.postgres.archives import archive_format, incomplete_reason, read_archive
from tests.conftest import (
    PG_IMAGE_NEWER,
    ContainerPostgres,
    Postgres,
    _image_there,
    _missing,
    drop_database,
    start_pg_container,
    stop_pg_container,
)

SETUP = [
    "CREATE TABLE items (id int PRIMARY KEY, label text NOT NULL)",
    "INSERT INTO items SELECT g, md5(g::text) || repeat('x', g % 50) "
    "FROM generate_series(1, 30000) g",
    "CREATE TABLE empty_one (x int)",
    "CREATE TABLE notes (id serial PRIMARY KEY, body text)",
    "INSERT INTO notes (body) SELECT 'note ' || g FROM generate_series(1, 500) g",
    "SELECT lo_from_bytea(0, convert_to(repeat('large object ', 3000), 'UTF8'))",
    "SELECT lo_from_bytea(0, convert_to('small', 'UTF8'))",
]


def _fill(server: Postgres, name: str) -> None:
    from psycopg import sql

    with server.connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with server.connect(name) as conn:
        for statement in SETUP:
            conn.execute(statement)


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """name -> a complete archive, made by pg_dump 15 (host) and 17 (container)."""
    from tests.conftest import PG

    out = tmp_path_factory.mktemp("archives")
    made: dict[str, Path] = {}
    host = Postgres(PG["host"], PG["port"], PG["user"], PG["password"], [])
    try:
        host.databases()
    except Exception:
        _missing("the PostgreSQL server on the host (run scripts/setup-env.sh)")
    if shutil.which("pg_dump") is None or subprocess.run(
            ["docker", "info"], capture_output=True).returncode != 0 \
            or not _image_there(PG_IMAGE_NEWER):
        _missing(f"pg_dump, a Docker engine and {PG_IMAGE_NEWER}")
    name = f"kt_arch_{uuid.uuid4().hex[:8]}"
    newer: ContainerPostgres | None = None
    try:
        _fill(host, name)
        env = {**os.environ, "PGPASSWORD": host.password}
        conn = ["-h", host.host, "-p", host.port, "-U", host.user, name]

        def host_dump(label: str, *args: str, pipe: bool = False) -> None:
            target = out / label
            if pipe:  # pg_dump writes to a pipe: the TOC keeps its offsets unset
                target.write_bytes(subprocess.run(["pg_dump", *args, *conn], env=env, check=True,
                                                  stdout=subprocess.PIPE).stdout)
            else:
                subprocess.run(["pg_dump", *args, "-f", str(target), *conn], env=env, check=True)
            made[label] = target

        host_dump("15.dump", "-Fc")
        host_dump("15-piped.dump", "-Fc", pipe=True)
        host_dump("15-z0.dump", "-Fc", "-Z", "0")
        host_dump("15-gzip.dir", "-Fd")
        host_dump("15-z0.dir", "-Fd", "-Z", "0")
        host_dump("15-j2.dir", "-Fd", "-j", "2")

        newer = start_pg_container(PG_IMAGE_NEWER, uuid.uuid4().hex[:6])
        _fill(newer, name)
        inner = ["-U", newer.user, name]
        for label, args in (("17.dump", ["-Fc"]), ("17-lz4.dump", ["-Fc", "--compress=lz4"]),
                            ("17-zstd.dump", ["-Fc", "--compress=zstd"]),
                            ("17-z0.dump", ["-Fc", "-Z", "0"]),
                            ("17-gzip.dir", ["-Fd"]), ("17-lz4.dir", ["-Fd", "--compress=lz4"]),
                            ("17-zstd.dir", ["-Fd", "--compress=zstd:5"]),
                            ("17-z0.dir", ["-Fd", "-Z", "0"])):
            subprocess.run(["docker", "exec", newer.container, "pg_dump", *args, "-f",
                            f"/tmp/{label}", *inner], check=True, capture_output=True)
            subprocess.run(["docker", "cp", f"{newer.container}:/tmp/{label}", str(out / label)],
                           check=True, capture_output=True)
            made[label] = out / label
        with open(out / "17-piped.dump", "wb") as sink:
            subprocess.run(["docker", "exec", newer.container, "pg_dump", "-Fc", *inner],
                           stdout=sink, check=True)
        made["17-piped.dump"] = out / "17-piped.dump"
        yield made
    finally:
        if newer is not None:
            stop_pg_container(newer)
        with host.connect() as admin:
            drop_database(admin, name)


def test_complete_archives_pass(archives: dict[str, Path]) -> None:
    for label, path in archives.items():
        assert incomplete_reason(path) is None, label
        archive = read_archive(path)
        assert archive.format == ("directory" if label.endswith(".dir") else "custom")
        assert archive_format(path) == archive.format
        # pg_dump 15 writes archive version 1.14, pg_dump 17 1.16
        assert archive.version == ((1, 14, 0) if label.startswith("15") else (1, 16, 0)), label
        expected = "none" if "z0" in label else "lz4" if "lz4" in label else \
            "zstd" if "zstd" in label else "gzip"
        assert archive.compression == expected, label
        assert archive.pg_dump_version.startswith(label[:2]), archive.pg_dump_version
        descs = {e.desc for e in archive.entries}
        assert {"TABLE DATA", "BLOBS"} <= descs or {"TABLE DATA", "BLOB METADATA"} <= descs


def test_piped_archives_have_no_offsets_and_still_pass(archives: dict[str, Path]) -> None:
    for label in ("15-piped.dump", "17-piped.dump"):
        archive = read_archive(archives[label])
        flags = {e.offset_flag for e in archive.entries if e.desc == "TABLE DATA"}
        assert flags == {1}, label  # K_OFFSET_POS_NOT_SET
    assert {e.offset_flag for e in read_archive(archives["15.dump"]).entries
            if e.desc == "TABLE DATA"} == {2}


def _cut_points(size: int, data_start: int) -> list[int]:
    points = {0, 1, 4, 5, 8, 11, 30, data_start // 2, data_start - 1, data_start,
              data_start + 1, data_start + 5}
    points |= {data_start + (size - data_start) * k // 10 for k in range(1, 10)}
    points |= {size - 5, size - 1}
    return sorted(p for p in points if 0 <= p < size)


@pytest.mark.parametrize("label", ["15.dump", "15-piped.dump", "15-z0.dump", "17.dump",
                                   "17-lz4.dump", "17-zstd.dump", "17-z0.dump",
                                   "17-piped.dump"])
def test_cut_custom_archives_fail(archives: dict[str, Path], tmp_path: Path,
                                  label: str) -> None:
    blob = archives[label].read_bytes()
    data_start = read_archive(archives[label]).data_start
    cut = tmp_path / "cut.dump"
    for at in _cut_points(len(blob), data_start):
        cut.write_bytes(blob[:at])
        reason = incomplete_reason(cut)
        assert reason is not None, f"{label} cut at {at} of {len(blob)} passed"
        assert "\n" not in reason and len(reason) < 200, reason


def test_pg_restore_list_alone_passes_a_cut_archive(archives: dict[str, Path],
                                                    tmp_path: Path) -> None:
    blob = archives["15.dump"].read_bytes()
    cut = tmp_path / "half.dump"
    cut.write_bytes(blob[:len(blob) // 2])
    listed = subprocess.run(["pg_restore", "--list", str(cut)], capture_output=True, text=True)
    assert listed.returncode == 0 and "TABLE DATA public items" in listed.stdout
    assert "no data for" in (incomplete_reason(cut) or "") or \
        "cut off" in (incomplete_reason(cut) or "")


def test_damaged_block_header_fails(archives: dict[str, Path], tmp_path: Path) -> None:
    blob = bytearray(archives["15.dump"].read_bytes())
    start = read_archive(archives["15.dump"]).data_start
    blob[start] = 7  # no such block type
    bad = tmp_path / "bad.dump"
    bad.write_bytes(bytes(blob))
    assert "damaged data at byte" in (incomplete_reason(bad) or "")
    bad.write_bytes(bytes(archives["15.dump"].read_bytes()) + b"\x00")
    assert incomplete_reason(bad) is not None  # bytes after the last block


@pytest.mark.parametrize("label", ["15-gzip.dir", "15-z0.dir", "15-j2.dir", "17-gzip.dir",
                                   "17-lz4.dir", "17-zstd.dir", "17-z0.dir"])
def test_directory_with_missing_or_cut_files_fails(archives: dict[str, Path], tmp_path: Path,
                                                   label: str) -> None:
    original = archives[label]
    archive = read_archive(original)
    items = next(e for e in archive.entries if e.desc == "TABLE DATA" and e.tag == "items")
    suffix = {"gzip": ".gz", "lz4": ".lz4", "zstd": ".zst", "none": ""}[archive.compression]
    data_name = items.filename + suffix

    def fresh() -> Path:
        copy = tmp_path / f"copy-{uuid.uuid4().hex[:6]}"
        shutil.copytree(original, copy)
        return copy

    copy = fresh()
    (copy / data_name).unlink()
    assert incomplete_reason(copy) == f"data file {data_name} is missing (TABLE DATA public.items)"

    data = (original / data_name).read_bytes()
    for at in (1, len(data) // 2, len(data) - 1):
        copy = fresh()
        (copy / data_name).write_bytes(data[:at])
        reason = incomplete_reason(copy)
        assert reason is not None and reason.startswith(f"data file {data_name}: "), (at, reason)

    toc = (original / "toc.dat").read_bytes()
    for at in (0, 3, len(toc) // 2, len(toc) - 1):
        copy = fresh()
        (copy / "toc.dat").write_bytes(toc[:at])
        assert incomplete_reason(copy) is not None, at
    copy = fresh()
    (copy / "toc.dat").unlink()
    assert incomplete_reason(copy) == "no toc.dat in the directory"
    # a large object's file, compressed or listed
    lo_list = next(e.filename for e in archive.entries if e.filename.endswith(".toc"))
    first_blob = (original / lo_list).read_text().split()[1] + suffix
    copy = fresh()
    (copy / first_blob).unlink()
    assert "is missing" in (incomplete_reason(copy) or "")


def test_cleanup_counts_whole_archives_only_and_leaves_cut_ones(archives: dict[str, Path],
                                                                tmp_path: Path) -> None:
    """Real archives in a stack folder: whole custom and directory dumps are counted and the
    oldest deleted; a custom archive cut in half and a directory with a data file missing
    are never counted nor deleted, however old, and db:list says why."""
    from tests.conftest import COMPOSE, make_stacks, run_kompose

    root = make_stacks(tmp_path / "root", {"shop": {"compose.yaml": COMPOSE,
                                                    ".env": "DB_NAME=shop\n"}})
    folder = root / "shop"
    whole = {f"shop_2025010{d}_000000Z.dump": "17-zstd.dump" for d in (2, 4)}
    whole |= {f"shop_2025010{d}_000000Z.dir": "15-gzip.dir" for d in (3, 5)}
    for name, label in whole.items():
        (shutil.copytree if label.endswith(".dir") else shutil.copy)(archives[label],
                                                                      folder / name)
    cut, broken = folder / "shop_20240101_000000Z.dump", folder / "shop_20260101_000000Z.dir"
    data = archives["15.dump"].read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    shutil.copytree(archives["15-gzip.dir"], broken)
    largest = max((p for p in broken.iterdir() if p.name != "toc.dat"),
                  key=lambda p: p.stat().st_size)
    largest.unlink()
    listing = run_kompose("--root", str(root), "shop", "db:list")
    assert listing.code == 0, listing.err
    lines = {line.split()[0]: line for line in listing.out.splitlines()[1:]}
    assert "INCOMPLETE: cut off in the data of TABLE DATA public.items" in lines[cut.name]
    assert f"INCOMPLETE: data file {largest.name} is missing" in lines[broken.name], lines
    assert sum("INCOMPLETE" in line for line in lines.values()) == 2, listing.out
    r = run_kompose("--root", str(root), "shop", "db:cleanup", "--keep-last", "2")
    assert r.code == 0, r.err
    left = sorted(p.name for p in folder.iterdir() if p.name.startswith("shop_"))
    assert left == sorted([cut.name, "shop_20250104_000000Z.dump",
                           "shop_20250105_000000Z.dir", broken.name]), left
    assert len(list(broken.iterdir())) > 0  # left as it was
