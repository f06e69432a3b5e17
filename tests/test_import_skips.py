"""`db:import` without FILE loads the newest *complete* dump; a newer dump it passes over
(cut off, empty, damaged) is named with the reason, one line in text and in the stack's
``"warnings"`` in --json (issue 17, item 7). Real PostgreSQL, real CLI."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Postgres
from tests.test_database import dump_files, exported, kompose


def _with_newer_cut_off_dump(tmp_path: Path, pg: Postgres) -> tuple[str, Path, Path, Path]:
    """A database with a complete dump, and a newer dump of it that was cut off."""
    name, root, folder = exported(tmp_path, pg, rows=3)
    (complete,) = dump_files(folder)
    cut = folder / f"{name}_29991231_235959Z.sql"
    text = (folder / complete).read_text()
    cut.write_text(text[: len(text) // 2])  # no completion trailer: a killed pg_dump
    return name, root, folder / complete, cut


def test_text_names_the_skipped_newer_dump_and_why(tmp_path: Path, pg: Postgres) -> None:
    name, root, complete, cut = _with_newer_cut_off_dump(tmp_path, pg)
    r = kompose(root, "shop", "db:import")
    assert r.code == 0, r.err
    assert pg.rows(name)[-1][0] == 3  # the older, complete one was loaded
    lines = [line for line in r.all.splitlines() if cut.name in line]
    assert len(lines) == 1, r.all
    assert "skipped" in lines[0] and "no pg_dump completion trailer" in lines[0], lines[0]
    assert complete.name in r.all  # and which one was loaded instead


def test_json_lists_the_skipped_newer_dump_and_why(tmp_path: Path, pg: Postgres) -> None:
    _, root, complete, cut = _with_newer_cut_off_dump(tmp_path, pg)
    r = kompose(root, "--json", "shop", "db:import")
    assert r.code == 0, r.err
    (stack,) = json.loads(r.out)["stacks"]
    assert stack["files"] == [str(complete)]
    assert stack["warnings"] == [f"skipped {cut.name}, newer than {complete.name}: "
                                 f"no pg_dump completion trailer (cut off?)"]
