"""One import per database across machines: two kompose roots (as on two hosts: separate stack
folders, so separate folder locks) that import into the same database are kept apart by the
advisory lock the import holds on the server, in host and container modes."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import Postgres, make_stacks, run_kompose


def root_for(base: Path, pg: Postgres, name: str) -> Path:
    return make_stacks(base / "root", {"shop": {"compose.yaml": pg.compose,
                                                ".env": pg.env_text(name)}})


def sleeping_in(pg: Postgres, stem: str) -> bool:
    with pg.connect() as conn:
        return bool(conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname LIKE %s "
            "AND query LIKE 'SELECT pg_sleep%%'", (stem + "_kompose_new_%",)).fetchone()[0])


@pytest.mark.postgres
def test_an_import_from_another_machine_is_refused_while_one_runs(
        tmp_path: Path, server: Postgres) -> None:
    pg = server
    name = pg.new_name()
    pg.create(name, rows=30)
    first, second = root_for(tmp_path / "a", pg, name), root_for(tmp_path / "b", pg, name)
    assert run_kompose("--root", str(first), "shop", "db:export").code == 0
    (dump,) = (first / "shop").glob(f"{name}_*.sql")
    shutil.copy(dump, second / "shop" / dump.name)
    text = dump.read_text()
    cut = text.index("-- PostgreSQL database dump complete")
    sleepy = first / "shop" / "sleepy.sql"
    sleepy.write_text(text[:cut] + "SELECT pg_sleep(3600);\n" + text[cut - 4:])
    proc = subprocess.Popen([sys.executable, "-m", "kompose_py", "--root", str(first), "shop",
                             "db:import", str(sleepy)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not sleeping_in(pg, name):
            assert proc.poll() is None, "the first import ended early"
            assert time.monotonic() < deadline, "the first import never started loading"
            time.sleep(0.1)
        blocked = run_kompose("--root", str(second), "shop", "db:import")
        assert blocked.code == 1, blocked.all
        assert f"another import of {name} is running" in blocked.err
        assert not (second / "shop" / ".kompose-import.json").exists()
        # Nor does the other machine take the running import's scratch copy for a leftover:
        # db:recover there (no journal, so it looks on the server) touches nothing.
        scratch = [n for n in pg.databases() if n.startswith(name[:40] + "_kompose_new_")]
        assert len(scratch) == 1, scratch
        recovered = run_kompose("--root", str(second), "shop", "db:recover")
        assert recovered.code == 1, recovered.all
        assert f"not recovering: another import of {name} is running" in recovered.err
        assert scratch[0] in pg.databases() and sleeping_in(pg, name)
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)  # cancelled: its scratch database is dropped
        proc.wait(timeout=120)
    assert len(pg.rows(name)) == 30
    with pg.connect(name) as conn:
        conn.execute("DELETE FROM items WHERE id > 5")
    done = run_kompose("--root", str(second), "shop", "db:import")
    assert done.code == 0, done.all
    assert len(pg.rows(name)) == 30
