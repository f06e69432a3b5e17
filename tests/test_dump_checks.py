"""Dumps are checked before they count: a 0-byte file, a plain dump without pg_dump's
completion trailer and a truncated gzip never replace a database (unless --force, and then
still through a scratch database), are never "the newest dump", are never what cleanup keeps,
and db:list marks them. In both ways of reaching the server."""

from __future__ import annotations

import gzip
import shlex
from pathlib import Path

import pytest

from tests.conftest import Postgres, dump_text, make_stacks, run_kompose


def exported(tmp_path: Path, pg: Postgres) -> tuple[str, Path, Path]:
    name = pg.new_name()
    pg.create(name, rows=40)
    root = make_stacks(tmp_path / "root", {"shop": {"compose.yaml": pg.compose,
                                                    ".env": pg.env_text(name)}})
    r = run_kompose("--root", str(root), "shop", "db:export")
    assert r.code == 0, r.err
    (dump,) = (root / "shop").glob(f"{name}_*Z.sql")
    return name, root, dump


def bad_dumps(folder: Path, name: str, good: bytes) -> dict[str, Path]:
    """The three files users found on a real tree, named newer than the good dump."""
    cut = good[: good.index(b"COPY public.items")]  # schema only: a dump cut off mid-way
    files = {
        "empty": folder / f"{name}_29990101_000001Z.sql",
        "cut off": folder / f"{name}_29990101_000002Z.sql",
        "truncated gzip": folder / f"{name}_29990101_000003Z.sql.gz",
    }
    files["empty"].write_bytes(b"")
    files["cut off"].write_bytes(cut)
    packed = gzip.compress(good)
    files["truncated gzip"].write_bytes(packed[: len(packed) * 2 // 3])
    return files


@pytest.mark.parametrize("kind", ["empty", "cut off", "truncated gzip"])
def test_a_bad_dump_is_refused_before_anything_is_touched(tmp_path: Path, server: Postgres,
                                                         kind: str) -> None:
    pg = server
    name, root, good = exported(tmp_path, pg)
    with pg.connect(name) as conn:
        conn.execute("DELETE FROM items WHERE id > 30")
    before = pg.rows(name)
    bad = bad_dumps(root / "shop", name, good.read_bytes())[kind]
    r = run_kompose("--root", str(root), "shop", "db:import", str(bad))
    assert r.code == 1
    assert f"refusing {bad.name}: " in r.err and "nothing was touched" in r.err
    assert pg.rows(name) == before
    assert {d for d in pg.databases() if d.startswith(name)} == {name}  # no scratch made
    # The newest complete dump is the good one, whatever the bad ones are named.
    r = run_kompose("--root", str(root), "shop", "db:import")
    assert r.code == 0, r.err
    assert f"{name} replaced by {good.name}" in r.err
    assert len(pg.rows(name)) == 40


def test_force_imports_a_cut_off_dump_through_the_scratch_database(tmp_path: Path,
                                                                   server: Postgres) -> None:
    pg = server
    name, root, good = exported(tmp_path, pg)
    cut = bad_dumps(root / "shop", name, good.read_bytes())["cut off"]
    r = run_kompose("--root", str(root), "shop", "db:import", "--force", str(cut))
    assert r.code == 0, r.err
    assert "_kompose_new_" in r.err  # still loaded into a scratch database first
    assert pg.rows(name) == []  # what the user forced: the schema without its rows
    # A forced file that does not even load still leaves the target as it was.
    r = run_kompose("--root", str(root), "shop", "db:import", str(good))
    assert r.code == 0 and len(pg.rows(name)) == 40
    broken = root / "shop" / "broken.sql"
    broken.write_text("CREATE TABLE items (id int);\nINSERT INTO nowhere VALUES (1);\n")
    r = run_kompose("--root", str(root), "shop", "db:import", "--force", str(broken))
    assert r.code == 1 and len(pg.rows(name)) == 40


def test_cleanup_keeps_complete_dumps_and_list_marks_the_rest(tmp_path: Path,
                                                              pg: Postgres) -> None:
    name, root, good = exported(tmp_path, pg)
    folder = root / "shop"
    older = folder / f"{name}_20000101_000000Z.sql"
    older.write_text(dump_text("SELECT 1;\n"))
    bad = bad_dumps(folder, name, good.read_bytes())
    # kompose.sh's failure: --keep 2 kept the empty dump and deleted two real ones.
    r = run_kompose("--root", str(root), "shop", "db:cleanup", "--keep", "2")
    assert r.code == 0, r.err
    assert good.exists() and older.exists()
    assert all(p.exists() for p in bad.values())
    assert "3 incomplete left alone" in r.err
    r = run_kompose("--root", str(root), "shop", "db:cleanup", "--keep", "1")
    assert r.code == 0 and good.exists() and not older.exists()
    # Counted before deleting (it once said "-1 incomplete" after deleting one).
    assert f"kept 1 of 2 complete dumps of {name}; 3 incomplete left alone" in r.err
    listing = run_kompose("--root", str(root), "shop", "db:list").out
    marks = {line.split()[0]: line for line in listing.splitlines() if name in line}
    assert "INCOMPLETE" not in marks[good.name]
    assert "INCOMPLETE: empty (0 bytes)" in marks[bad["empty"].name]
    assert "INCOMPLETE: no pg_dump completion trailer" in marks[bad["cut off"].name]
    assert "INCOMPLETE: truncated or damaged gzip" in marks[bad["truncated gzip"].name]


def test_what_psql_repeats_of_a_secret_is_masked(tmp_path: Path, server: Postgres) -> None:
    """psql quotes the failing line of a dump; a password in it never reaches the output."""
    pg = server
    _, root, _ = exported(tmp_path, pg)
    leaky = root / "shop" / "leaky.sql"
    leaky.write_text(dump_text(f"INSERT INTO nowhere VALUES ('{pg.password}');\n"))
    r = run_kompose("--root", str(root), "shop", "db:import", str(leaky))
    assert r.code == 1
    assert 'relation "nowhere" does not exist' in r.err
    assert "LINE 1: INSERT INTO nowhere VALUES ('***')" in r.err
    assert pg.password not in r.out + r.err


def test_db_shell_on_a_terminal_wherever_the_database_lives(tmp_path: Path,
                                                            server: Postgres) -> None:
    """db:shell keeps the terminal (docker exec -it in a container); extra arguments go to
    psql; one stack only."""
    from tests.conftest import run_on_terminal

    pg = server
    name, root, _ = exported(tmp_path, pg)
    # (A pseudo-terminal of unknown size makes psql page even one line: no pager here.)
    code, shown = run_on_terminal("--root", str(root), "shop", "db:shell", "-P", "pager=off",
                                  "-At", "-c", "SELECT 40 + 2", timeout=60)
    assert code == 0, shown
    assert "\n42" in shown.replace("\r", "")
    assert pg.password not in shown
    # The dry-run line is a command to paste: a psql argument that held the password is one
    # quoted word with *** where the password was.
    sql_text = f"SELECT '{pg.password}' AS pw, 1"
    r = run_kompose("--root", str(root), "-n", "shop", "db:shell", "-c", sql_text)
    assert r.code == 0, r.err
    assert pg.password not in r.out + r.err
    (line,) = [x for x in (r.out + r.err).splitlines() if " -c " in x]
    argv = shlex.split(line.split("$ ", 1)[1].removesuffix("would run"))
    assert argv[argv.index("-c") + 1] == "SELECT '***' AS pw, 1"
    make_stacks(root, {"blog": {"compose.yaml": pg.compose, ".env": pg.env_text(name)}})
    r = run_kompose("--root", str(root), "*", "db:shell")
    assert r.code == 2 and "db:shell opens one database" in r.err


def test_a_check_that_raises_raises_where_its_answer_is_waited_for(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The dump's checks run in a thread (db:import): an error there reaches the import as
    it would have without the thread, and the thread prints nothing of its own."""
    import threading

    from kompose_py.db import restore

    def unreadable(dump: Path) -> None:
        raise PermissionError(13, "Permission denied", str(dump))

    unhandled: list[object] = []
    monkeypatch.setattr(threading, "excepthook", unhandled.append)
    monkeypatch.setattr(restore, "check_manifest", unreadable)
    proof = restore.DumpProof(tmp_path / "shop_20240101_000000Z.sql", force=False)
    with pytest.raises(PermissionError):
        proof.refusal()
    assert unhandled == []


def test_the_newest_complete_dump_is_found_reading_no_older_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Newest first: each dump is checked once (a check inflates a compressed dump), none
    older than the one chosen, and the newer incomplete ones are said in their order."""
    from kompose_py.db import dumpfiles
    from kompose_py.stacks import Stack

    folder = tmp_path / "shop"
    folder.mkdir()
    for day, text in (("01", dump_text()), ("02", dump_text()), ("03", dump_text()),
                      ("04", "SELECT 1;\n"), ("05", "")):
        (folder / f"shop_202401{day}_000000Z.sql").write_text(text)
    checked: list[str] = []
    real = dumpfiles.incomplete_reason
    monkeypatch.setattr(dumpfiles, "incomplete_reason",
                        lambda path: checked.append(path.name) or real(path))
    stack = Stack("shop", folder, folder / "compose.yaml")
    chosen, passed_over = dumpfiles.newest_complete(stack, {}, "shop")
    assert chosen.name == "shop_20240103_000000Z.sql"
    assert checked == [f"shop_202401{d}_000000Z.sql" for d in ("05", "04", "03")]
    assert [line.split(",")[0] for line in passed_over] == [
        "skipped shop_20240104_000000Z.sql", "skipped shop_20240105_000000Z.sql"]


def test_a_dump_cut_after_a_row_holding_the_trailer_text_is_no_dump(
        tmp_path: Path, server: Postgres) -> None:
    """A row may hold pg_dump's trailer text: a dump cut right after that row (a full disk;
    no manifest, as kompose.sh's dumps) is not complete, is passed over, and is refused; the
    load itself refuses a dump that ends inside COPY data. psql would end the COPY at the end
    of its input and commit, and the tables after it would be empty."""
    pg = server
    name = pg.new_name()
    pg.create(name, rows=40)
    with pg.connect(name) as conn:
        conn.execute("CREATE TABLE a_notes (t text)")
        conn.execute("INSERT INTO a_notes VALUES ('-- PostgreSQL database dump complete'), "
                     "('see -- PostgreSQL database dump complete')")
    root = make_stacks(tmp_path / "root", {"shop": {"compose.yaml": pg.compose,
                                                    ".env": pg.env_text(name)}})
    r = run_kompose("--root", str(root), "shop", "db:export")
    assert r.code == 0, r.err
    (good,) = (root / "shop").glob(f"{name}_*Z.sql")
    text = good.read_bytes()
    for n, row in enumerate((b"\n-- PostgreSQL database dump complete\n",
                             b"\nsee -- PostgreSQL database dump complete\n")):
        cut = root / "shop" / f"{name}_2999010{n + 1}_000000Z.sql"
        cut.write_bytes(text[: text.index(row) + len(row)])
        listed = run_kompose("--root", str(root), "shop", "db:list")
        assert f"{cut.name}" in listed.out and "INCOMPLETE" in listed.out, listed.out
        r = run_kompose("--root", str(root), "shop", "db:import", str(cut))
        assert r.code == 1 and f"refusing {cut.name}: " in r.err and pg.rows(name), r.err
        cut.unlink()
    # The load's own check, whatever the file looks like at its end: the guard refuses a
    # stream that ends inside COPY data.
    from kompose_py.db.postgres.scan import MetaCommandGuard, UnsafeDump

    head = text[: text.index(b"\n-- PostgreSQL database dump complete\n") + 1]
    guard = MetaCommandGuard()
    guard.parts(head)
    with pytest.raises(UnsafeDump, match="ends inside the data of a COPY"):
        guard.finish()
    forced = MetaCommandGuard(force=True)
    forced.parts(head)
    forced.finish()
