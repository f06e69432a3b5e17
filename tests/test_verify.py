"""Issue 19 point 5, against the real servers (host tools and a server in a container): the
manifest an export writes beside its dump (row counts at pg_dump's own snapshot), the
checksum an import checks, and db:verify — a good dump verifies; changed bytes fail on the
sha256; a dump edited to lose rows (its manifest's checksum recomputed) fails on the counts;
a dump that does not load fails; no throwaway database is left after any of them, nor after
SIGTERM mid-verify, and a SIGKILL's leftover goes with the next db command."""

from __future__ import annotations

import json
import os
import re
import signal
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from kompose_py.db.journal import JOURNAL_NAME
from kompose_py.db.manifest import digest, manifest_path, read_manifest, write_manifest
from tests.conftest import Postgres
from tests.dbharness import kompose, leftovers, output, start, wait_for
from tests.test_db_safety import stack_root


def exported(tmp_path: Path, pg: Postgres, rows: int = 100) -> tuple[Path, str, Path]:
    """A database with two tables (one in a schema whose name needs quoting), exported by
    kompose: (root, database name, the dump)."""
    name = pg.new_name()
    pg.create(name, rows=rows)
    with pg.connect(name) as conn:
        conn.execute('CREATE SCHEMA "odd.schema"')
        conn.execute('CREATE TABLE "odd.schema"."Tab 1" (x int)')
        conn.execute('INSERT INTO "odd.schema"."Tab 1" SELECT generate_series(1, 7)')
    root = stack_root(tmp_path, pg, shop=name)
    r = kompose(root, "shop", "db:export")
    assert r.code == 0, r.all
    (dump,) = (root / "shop").glob("*Z.sql")
    return root, name, dump


def reseal(dump: Path) -> None:
    """Recompute the manifest's size and sha256 for the dump's current bytes (as someone who
    edits a dump and its manifest together would)."""
    manifest = read_manifest(manifest_path(dump))
    sha, size, files = digest(dump)
    write_manifest(dump, replace(manifest, sha256=sha, size=size, files=files))


def insert_before_items(dump: Path, statement: str) -> None:
    """Put ``statement`` into a plain dump just before its table is made, and reseal it."""
    text = dump.read_text()
    at = text.index("CREATE TABLE public.items")
    dump.write_text(text[:at] + statement + "\n" + text[at:])
    reseal(dump)


def verify_json(root: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    r = kompose(root, "--json", "shop", "db:verify", *args)
    (stack,) = json.loads(r.out)["stacks"]
    return r.code, stack, r.err


def test_export_manifest_and_a_good_dump_verifies(tmp_path: Path, server: Postgres) -> None:
    pg = server
    root, name, dump = exported(tmp_path, pg)
    manifest = read_manifest(manifest_path(dump))
    assert manifest.row_counts == {"public.items": 100, '"odd.schema".Tab 1': 7}
    assert manifest.format == "plain" and manifest.compression == "none"
    assert manifest.sha256 == digest(dump)[0] and manifest.size == dump.stat().st_size
    assert re.fullmatch(r"\d+\.\d+", manifest.pg_dump_version), manifest
    assert re.fullmatch(r"\d+\.\d+", manifest.server_version), manifest
    assert manifest.snapshot and manifest.database == name
    assert oct(manifest_path(dump).stat().st_mode & 0o777) == "0o600"
    code, stack, err = verify_json(root)
    assert code == 0, err
    details = stack["details"]
    assert details["sha256"] == "match" and details["load"] == "ok", details
    assert details["row_counts"] == "match" and details["tables"] == 2, details
    assert details["differences"] == [] and details["dump"] == str(dump)
    assert details["database"].startswith(name + "_kompose_new_")
    assert not leftovers(pg, name)
    assert not (root / "shop" / JOURNAL_NAME).exists()
    # The import checks the checksum and says so.
    r = kompose(root, "shop", "db:import")
    assert r.code == 0 and "matches its manifest" in r.err, r.all


@pytest.mark.parametrize(("options", "glob", "fmt", "compression"), [
    (["--compress"], "*Z.sql.gz", "plain", "gzip"),
    (["--compress", "zstd"], "*Z.sql.zst", "plain", "zstd"),
    (["--format", "custom"], "*Z.dump", "custom", "gzip"),
    (["--format", "directory", "--jobs", "2", "--compress", "none"], "*Z.dir", "directory",
     "none"),
], ids=["gzip", "zstd", "custom", "directory"])
def test_every_format_has_its_manifest_and_verifies(
        tmp_path: Path, server: Postgres, options: list[str], glob: str, fmt: str,
        compression: str) -> None:
    pg = server
    name = pg.new_name()
    pg.create(name, rows=30)
    root = stack_root(tmp_path, pg, shop=name)
    r = kompose(root, "shop", "db:export", *options)
    assert r.code == 0, r.all
    (dump,) = (root / "shop").glob(glob)
    manifest = read_manifest(manifest_path(dump))
    assert (manifest.format, manifest.compression) == (fmt, compression), manifest
    # kompose says on the pg_dump line when it compresses the stream itself
    by_kompose = re.search(r"\(compressed (with \w+ )?by kompose\)", r.err) is not None
    assert manifest.compressed_by == ("none" if compression == "none" else
                                      "kompose" if by_kompose else "pg_dump"), r.err
    assert manifest.row_counts == {"public.items": 30}
    assert (manifest.sha256, manifest.size, manifest.files) == digest(dump)
    if fmt == "directory":
        assert "toc.dat" in {f.name for f in manifest.files}
    code, stack, err = verify_json(root, "--jobs", "2")
    assert code == 0 and stack["details"]["row_counts"] == "match", err
    assert "pg_restore" in err if fmt != "plain" else "psql" in err
    assert not leftovers(pg, name)


def test_changed_bytes_fail_on_sha256_and_the_import_refuses(tmp_path: Path,
                                                             server: Postgres) -> None:
    pg = server
    root, name, dump = exported(tmp_path, pg)
    dump.write_bytes(dump.read_bytes().replace(b"item 42\n", b"item 4X\n"))  # same size
    code, stack, err = verify_json(root)
    assert code == 1 and stack["status"] == "failed", err
    assert "sha256" in stack["message"] and "nothing was restored" in stack["message"]
    assert stack["details"]["sha256"] == "mismatch" and stack["details"]["load"] == "not run"
    good = manifest_path(dump).read_text()
    manifest_path(dump).write_text("{not json")  # (newest passes it over: FILE names it)
    code, stack, err = verify_json(root, str(dump))
    assert code == 1 and "its manifest cannot be used" in stack["message"], err
    assert stack["details"]["sha256"] == "unusable manifest", stack["details"]
    manifest_path(dump).write_text(good)
    # With no hook, the sha256 is read while the session opens and the scratch database is
    # made; it is still known before a statement of the dump runs.
    r = kompose(root, "shop", "db:import")
    assert r.code == 1, r.all
    (line,) = [x for x in r.err.splitlines() if x.startswith("  ✗ shop")]  # the summary
    assert "does not match its manifest: sha256" in line and "nothing was touched" in line
    assert "pg_dump" not in r.err and "psql" not in r.err.replace("(psql", "")
    assert pg.rows(name)[41] == (42, "item 42")
    assert not leftovers(pg, name)
    assert not (root / "shop" / JOURNAL_NAME).exists()
    # With a hook, it is known before the first hook runs, and no hook runs.
    marker = tmp_path / "hook-ran"
    (root / "shop" / "hooks.sh").write_text(
        f"hook_pre_db_import() {{ touch {marker}; }}\n"
        f"hook_finally_db_import() {{ touch {marker}; }}\n")
    r = kompose(root, "shop", "db:import")
    assert r.code == 1, r.all
    (line,) = [x for x in r.err.splitlines() if x.startswith("✗ shop")]
    assert "does not match its manifest: sha256" in line and "nothing was touched" in line
    assert not marker.exists() and "pre_db_import" not in r.err
    assert pg.rows(name)[41] == (42, "item 42")
    assert not leftovers(pg, name)


def test_a_dump_edited_to_lose_rows_fails_on_the_counts(tmp_path: Path,
                                                        server: Postgres) -> None:
    pg = server
    root, name, dump = exported(tmp_path, pg)
    text = dump.read_text()
    lines = [x for x in text.splitlines(keepends=True)
             if not re.match(r"(5|6|7)\titem (5|6|7)\n", x)]
    dump.write_text("".join(lines))
    reseal(dump)
    code, stack, err = verify_json(root)
    assert code == 1, err
    assert stack["details"]["sha256"] == "match" and stack["details"]["load"] == "ok"
    assert stack["details"]["row_counts"] == "differ"
    assert stack["details"]["differences"] == [
        {"table": "public.items", "expected": 100, "actual": 97}]
    assert "public.items: 97 rows restored, the dump had 100" in stack["message"]
    assert not leftovers(pg, name)


def test_a_dump_that_does_not_load_fails(tmp_path: Path, server: Postgres) -> None:
    pg = server
    root, name, dump = exported(tmp_path, pg)
    insert_before_items(dump, "SELECT no_such_function_kt();")
    code, stack, err = verify_json(root)
    assert code == 1, err
    assert stack["details"]["load"] == "failed"
    assert "did not load" in stack["message"] and "no_such_function_kt" in stack["message"]
    assert not leftovers(pg, name)
    assert not (root / "shop" / JOURNAL_NAME).exists()


def test_a_dump_without_manifest_verifies_and_imports_by_restore_alone(
        tmp_path: Path, server: Postgres) -> None:
    pg = server
    root, name, dump = exported(tmp_path, pg)
    manifest_path(dump).unlink()
    code, stack, err = verify_json(root, dump.name)
    assert code == 0, err
    assert "verified by restore alone" in err
    assert stack["details"]["manifest"] is None and stack["details"]["tables"] == 2
    assert stack["details"]["row_counts"] == "unchecked"
    r = kompose(root, "shop", "db:import")
    assert r.code == 0 and "no manifest beside" in r.err, r.all
    assert not leftovers(pg, name)


def _sleeping_in_copy(pg: Postgres, name: str) -> bool:
    stem = name + "_kompose_new_"
    with pg.connect() as conn:
        return bool(conn.execute(
            "SELECT 1 FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND "
            "starts_with(datname, %s)", (stem,)).fetchall())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_stopped_verify_leaves_no_throwaway_database(tmp_path: Path, server: Postgres,
                                                       sig: int) -> None:
    """Stopped while its load runs: SIGTERM drops the throwaway copy before kompose ends
    (143); after a SIGKILL the journal makes the next db command of the stack drop it."""
    pg = server
    root, name, dump = exported(tmp_path, pg)
    insert_before_items(dump, "SELECT pg_sleep(600);")
    proc, logs = start(root, "shop", "db:verify")
    try:
        wait_for("the load sleeping in the throwaway copy", lambda: _sleeping_in_copy(pg, name))
        assert leftovers(pg, name)
        os.kill(proc.pid, sig)
        code = proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    if sig == signal.SIGTERM:
        assert code == 143, output(logs)
        assert not leftovers(pg, name), output(logs)
        assert not (root / "shop" / JOURNAL_NAME).exists()
        return
    assert leftovers(pg, name)
    assert (root / "shop" / JOURNAL_NAME).exists()
    listed = kompose(root, "shop", "db:list")  # said as what it was: a verify, no old copy
    assert f"interrupted db:verify of {name} (leftover {name}_kompose_new_" in listed.out, \
        listed.all
    assert "_kompose_old_" not in listed.out
    r = kompose(root, "shop", "db:export")  # the next db command puts it right first
    assert r.code == 0 and "dropping the scratch database" in r.err, r.all
    assert f"a db:verify of {name} was interrupted" in r.err, r.all
    assert not leftovers(pg, name)
    assert not (root / "shop" / JOURNAL_NAME).exists()


def test_verify_every_stack_and_a_file_for_one_stack_only(tmp_path: Path, pg: Postgres) -> None:
    a, b = pg.new_name(), pg.new_name()
    pg.create(a, rows=3)
    pg.create(b, rows=4)
    root = stack_root(tmp_path, pg, one=a, two=b)
    assert kompose(root, "*", "db:export").code == 0
    r = kompose(root, "--json", "*", "db:verify")
    assert r.code == 0, r.all
    stacks = json.loads(r.out)["stacks"]
    assert [s["details"]["row_counts"] for s in stacks] == ["match", "match"]
    r = kompose(root, "*", "db:verify", "whatever.sql")
    assert r.code == 2 and "one stack" in r.err, r.all
    plan = kompose(root, "-n", "one", "db:verify")
    assert plan.code == 0 and "_kompose_new_" in plan.err, plan.all
    assert not leftovers(pg, a) and not leftovers(pg, b)


def test_a_manifest_without_counts_verifies_by_restore_alone(tmp_path: Path,
                                                             pg: Postgres) -> None:
    """An export whose counting failed writes "row_counts": null and the reason; such a dump
    is still verified (restore alone), and the output says why."""
    root, name, dump = exported(tmp_path, pg)
    manifest = read_manifest(manifest_path(dump))
    write_manifest(dump, replace(manifest, row_counts=None, snapshot=None,
                                 row_counts_error="cannot connect (test)"))
    assert json.loads(manifest_path(dump).read_text())["row_counts"] is None
    code, stack, err = verify_json(root)
    assert code == 0, err
    assert stack["details"]["row_counts"] == "unknown" and stack["details"]["load"] == "ok"
    assert "no row counts (cannot connect (test))" in err
    assert not leftovers(pg, name)


def test_counts_are_those_of_the_dump_while_rows_keep_coming(tmp_path: Path,
                                                             server: Postgres) -> None:
    """A writer commits rows all through the export: the manifest's count is exactly the
    number of rows in the dump's COPY data (both read at the one exported snapshot)."""
    import threading

    pg = server
    name = pg.new_name()
    pg.create(name, rows=20000)
    root = stack_root(tmp_path, pg, shop=name)
    stop = threading.Event()
    written = [0]

    def write() -> None:
        with pg.connect(name) as conn:
            while not stop.is_set():
                conn.execute("INSERT INTO items SELECT coalesce(max(id), 0) + 1, 'late' "
                             "FROM items")
                written[0] += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        r = kompose(root, "shop", "db:export")
    finally:
        stop.set()
        writer.join()
    assert r.code == 0, r.all
    (dump,) = (root / "shop").glob("*Z.sql")
    text = dump.read_text()
    copy = text[text.index("COPY public.items"):]
    rows_in_dump = copy[:copy.index("\n\\.\n")].count("\n")
    assert read_manifest(manifest_path(dump)).row_counts == {"public.items": rows_in_dump}
    assert written[0] > 0 and len(pg.rows(name)) >= rows_in_dump
    code, stack, err = verify_json(root)
    assert code == 0 and stack["details"]["row_counts"] == "match", err


def test_a_databases_own_timeouts_do_not_cut_the_counting(tmp_path: Path,
                                                          server: Postgres) -> None:
    """A database that sets statement_timeout (common in production): pg_dump sets its own to
    0, and so does the counting session, for its transaction only."""
    from psycopg import sql

    pg = server
    name = pg.new_name()
    pg.create(name, rows=300000)
    with pg.connect() as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} SET statement_timeout = '1ms'").format(
            sql.Identifier(name)))
    root = stack_root(tmp_path, pg, shop=name)
    r = kompose(root, "shop", "db:export")
    assert r.code == 0 and "warning" not in r.err, r.all
    (dump,) = (root / "shop").glob("*Z.sql")
    assert read_manifest(manifest_path(dump)).row_counts == {"public.items": 300000}


def test_counting_that_fails_leaves_the_dump_and_says_counts_unknown(
        tmp_path: Path, server: Postgres, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The counting statement fails at once (before pg_dump has imported the snapshot): it
    fails inside a savepoint, the snapshot lives on, the dump is published with a manifest
    that says the counts are unknown and why, and the export warns."""
    import kompose_py.db.snapshot as snapshot
    from kompose_py.cli import main

    pg = server
    name = pg.new_name()
    pg.create(name, rows=10)
    root = stack_root(tmp_path, pg, shop=name)
    monkeypatch.setattr(snapshot, "_count", lambda ch: ch.rows("SELECT 1/0, 1", 2))
    assert main(["--root", str(root), "shop", "db:export"]) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert "warning: row counts not taken (counting failed: division by zero)" in err, err
    (dump,) = (root / "shop").glob("*Z.sql")
    manifest = read_manifest(manifest_path(dump))
    assert manifest.row_counts is None and manifest.snapshot is None
    assert manifest.row_counts_error == "counting failed: division by zero"
    assert manifest.sha256 == digest(dump)[0]


def test_an_incomplete_file_is_refused_before_anything_is_restored(tmp_path: Path,
                                                                   pg: Postgres) -> None:
    root, name, dump = exported(tmp_path, pg)
    cut = dump.with_name(dump.name.replace("Z.sql", "Z_2.sql"))
    cut.write_bytes(dump.read_bytes()[:-200])
    code, stack, err = verify_json(root, cut.name)
    assert code == 1 and "not a complete dump" in stack["message"], err
    assert stack["details"]["load"] == "not run" and stack["details"]["database"] is None
    assert "CREATE DATABASE" not in err and not leftovers(pg, name)


def test_table_keys_of_dotted_names_stay_apart() -> None:
    from kompose_py.db.manifest import table_key

    assert table_key("public", "items") == "public.items"
    assert table_key("a.b", "c") != table_key("a", "b.c")
    assert table_key("a.b", "c") == '"a.b".c' and table_key("a", 'b"c') == 'a.b"c'
    assert table_key('"a', "b") == '"""a".b' != table_key("a", "b")


def test_a_manifest_that_is_no_regular_file_or_nests_too_deep_is_refused(
        tmp_path: Path) -> None:
    import threading

    from kompose_py.db.manifest import ManifestError

    dump = tmp_path / "shop_20250101_000000Z.sql"
    dump.write_text("SELECT 1;\n")
    path = manifest_path(dump)
    os.mkfifo(path)  # would block a plain open() forever
    done: list[str] = []
    reader = threading.Thread(target=lambda: done.append(
        _refusal(read_manifest, path, ManifestError)), daemon=True)
    reader.start()
    reader.join(10)
    assert done == [f"{path.name}: not a regular file"]
    path.unlink()
    path.write_text("[" * 100000 + "]" * 100000)
    assert "nested too deep" in _refusal(read_manifest, path, ManifestError)


def _refusal(read: Any, path: Path, error: type[Exception]) -> str:
    try:
        read(path)
    except error as exc:
        return str(getattr(exc, "message", exc))
    return "accepted"


def test_a_manifest_of_another_format_or_version_zero_is_refused(tmp_path: Path) -> None:
    from kompose_py.db.manifest import Manifest, check_manifest

    dump = tmp_path / "shop_20250101_000000Z.sql"
    dump.write_text("SELECT 1;\n")
    sha, size, _ = digest(dump)
    made = Manifest(dump.name, "custom", "none", size, sha, "shop", "2025-01-01T00:00:00Z",
                    "15.0", "15.0", {})
    write_manifest(dump, made)
    assert check_manifest(dump)[1] == (f"its manifest {dump.name}.json describes a custom "
                                       f"dump; this is a plain one")
    write_manifest(dump, replace(made, format="plain"))
    assert check_manifest(dump)[1] is None
    data = json.loads(manifest_path(dump).read_text())
    manifest_path(dump).write_text(json.dumps({**data, "manifest": 0}))
    assert "'manifest' 0 is no manifest version" in str(check_manifest(dump)[1])
