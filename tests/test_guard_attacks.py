"""Dumps crafted to make psql run a shell command past the meta-command guard, end to end
against the real server and psql: a bare ``psql -v ON_ERROR_STOP=1 --single-transaction``
runs the command (so the attack is real on this psql), ``kompose db:import`` refuses the dump
at its line, the command never runs, and the database is as it was. (A hostile review found
these; each got through the guard before it was hardened.) pg_dump 15.14+/16.10+/17.6+
wraps its own dumps in ``\\restrict KEY`` … ``\\unrestrict KEY``, which makes psql refuse
meta-commands in between; a crafted dump simply leaves those lines out, as these do."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Postgres
from tests.dbharness import kompose, leftovers
from tests.test_verify import exported, insert_before_items

T = "CREATE TABLE public.guard_t (a text);\n"
C = "COPY public.guard_t (a) FROM"
# What goes before the dump's first table ({cmd}: the shell command). The NUL cases of
# test_dumpscan are left out here: a text file is what this test edits.
META = {  # a meta-command psql would run: refused; --force leaves it out and loads the rest
    "backtick in \\echo": "\\echo `{cmd}`\n",
    "a CR ends a -- comment": "SELECT 1; -- x\r\\! {cmd}\n",
    # the guard follows the COPY as the server does (a comment is white space), so the quote
    # in its data opens nothing and the command after its end is caught
    "COPY FROM/**/stdin": T + f"{C}/**/stdin;\n'\n\\.\n\\! {{cmd}}\n",
}
UNCLEAR = {  # where psql and the guard could part: refused, --force or not
    "two COPYs on one line": T + f"{C} stdin; {C} stdin;\n1\n\\.\n'\n\\.\n\\! {{cmd}}\n",
    "standard_conforming_strings off": "SET standard_conforming_strings = off;\n"
                                       "SELECT '\\'' \\! {cmd}\n';\n"
                                       "SET standard_conforming_strings = on;\n",
}

ATTACKS = {**META, **UNCLEAR}


def bare_psql(pg: Postgres, database: str, dump: Path) -> subprocess.CompletedProcess[bytes]:
    """The dump as a bare psql loads it (what kompose feeds it through the guard)."""
    env = {**os.environ, "PGPASSWORD": pg.password}
    return subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction",
                           "--no-password", "-h", pg.host, "-p", pg.port, "-U", pg.user,
                           "-d", database, "-f", str(dump)], env=env, capture_output=True,
                          timeout=60)


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_a_crafted_dump_runs_nothing_and_is_refused_at_its_line(tmp_path: Path, pg: Postgres,
                                                                attack: str) -> None:
    root, name, dump = exported(tmp_path, pg)
    dump.write_text("".join(line for line in dump.read_text().splitlines(keepends=True)
                            if not line.startswith(("\\restrict ", "\\unrestrict "))))
    marker = tmp_path / "pwned"
    payload = ATTACKS[attack].format(cmd=f"touch {marker}")
    insert_before_items(dump, payload)
    at = dump.read_bytes().index(payload.encode())
    first = dump.read_bytes()[:at].count(b"\n") + 1  # the payload's first line
    # The attack is real: a bare psql runs the command.
    scratch = pg.new_name("guard")
    with pg.connect() as conn:
        conn.execute(f'CREATE DATABASE "{scratch}"')
    loaded = bare_psql(pg, scratch, dump)
    assert marker.exists(), f"{attack}: psql did not run it: {loaded.stderr.decode()}"
    marker.unlink()
    before = pg.rows(name)
    for force in ((), ("--force",)):
        r = kompose(root, "shop", "db:import", *force)
        assert not marker.exists(), f"{attack}: the command ran through kompose {force}"
        said = "--force: left out line " if force and attack in META \
            else "refusing the dump: line "  # (left out, and said; or refused)
        assert r.code == (0 if said.startswith("--force") else 1), r.all
        assert said in r.err, r.all
        line = int(r.err.split(said, 1)[1].split()[0])
        assert first <= line <= first + ATTACKS[attack].count("\n"), (line, first, r.err)
        if r.code == 0:
            continue
        assert pg.rows(name) == before
        assert not leftovers(pg, name)
