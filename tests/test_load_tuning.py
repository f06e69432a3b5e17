"""The session settings of pg_restore into an import's scratch database (libpq's PGOPTIONS),
and how they reach a client tool in a container: by name, as the password does."""

from __future__ import annotations

from pathlib import Path

from kompose_py.db.postgres.tools import client_flags, load_tuning
from kompose_py.db.reach import ContainerAccess
from kompose_py.db.settings import DbSettings

DB = DbSettings("shop", "db", "5432", "app", "s3cret-pw", "postgres")


def test_flush_after_comes_first_and_the_stacks_own_options_win() -> None:
    assert load_tuning({"A": "1"}, 150000) == {
        "A": "1", "PGOPTIONS": "-c backend_flush_after=256"}
    own = load_tuning({"PGOPTIONS": " -c maintenance_work_mem=1GB "}, 90600)
    assert own["PGOPTIONS"] == "-c backend_flush_after=256 -c maintenance_work_mem=1GB"


def test_servers_without_the_setting_and_unknown_servers_get_nothing() -> None:
    # backend_flush_after came with 9.6; an unknown server may be older
    assert load_tuning({"PGOPTIONS": "-c x=1"}, 90500) == {"PGOPTIONS": "-c x=1"}
    assert load_tuning({}, None) == {}


def test_pgoptions_reach_a_container_by_name_only() -> None:
    assert client_flags(DB, False, False) == [
        "-e", "PGPASSWORD", "-e", "PGCONNECT_TIMEOUT=10"]
    env = load_tuning({}, 170000)
    assert client_flags(DB, True, False, env) == [
        "-i", "-e", "PGPASSWORD", "-e", "PGOPTIONS", "-e", "PGCONNECT_TIMEOUT=10"]
    cmd = ContainerAccess(DB, "shop-db-1", "5432", "").tool(
        "pg_restore", "shop_kompose_new_0", ["--jobs=2"], env, Path("/"))
    assert "PGOPTIONS" in cmd.argv and "backend_flush_after" not in " ".join(cmd.argv)
    assert cmd.env["PGOPTIONS"] == "-c backend_flush_after=256"
    assert "s3cret-pw" not in " ".join(cmd.argv)
