"""``DB_DUMP_DIR``: a stack's dumps in ``<DB_DUMP_DIR>/<stack>/`` for every command that reads
or writes them, a missing DB_DUMP_DIR failing that stack before pg_dump runs, and the README's
restic hook that sends each new dump off the machine, run against a local restic repository."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, Postgres, _missing, make_stacks, run_kompose

HOOKS = r"""
hook_post_db_export() { printf '%s\n' "$1" >>"$KOMPOSE_STACK_DIR/exported"; }
"""


def dumps_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()
                  if ".sql" in p.name and not p.name.endswith(".json")) \
        if folder.is_dir() else []  # (not the manifests beside them)


def complete(root: Path, line: str) -> list[str]:
    """What fish completion offers for ``line`` (Typer's protocol, as tests/test_completion)."""
    env = {**os.environ, "_KOMPOSE_COMPLETE": "complete_fish", "_TYPER_COMPLETE_ARGS": line,
           "_TYPER_COMPLETE_FISH_ACTION": "get-args", "KOMPOSE_ROOT": str(root)}
    out = subprocess.run([sys.executable, "-m", "kompose_py"], cwd=root.parent, env=env,
                         capture_output=True, text=True, check=True).stdout
    return [w.split("\t")[0] for w in out.splitlines() if w]


def test_every_reader_and_writer_follows_db_dump_dir(tmp_path: Path, server: Postgres) -> None:
    pg = server
    name = pg.new_name()
    pg.create(name, rows=30)
    offsite = tmp_path / "offsite"
    offsite.mkdir()
    # Relative to the root, from the root .env; the stack .env holds the connection.
    root = make_stacks(tmp_path / "root", {
        ".env": "DB_DUMP_DIR=../offsite\n",
        "shop": {"compose.yaml": pg.compose, ".env": pg.env_text(name), "hooks.sh": HOOKS}})
    stack, folder = root / "shop", offsite / "shop"

    def kompose(*args: str) -> subprocess.CompletedProcess[str]:
        r = run_kompose("--root", str(root), *args)
        return subprocess.CompletedProcess(args, r.code, r.out, r.err)

    r = kompose("-n", "shop", "db:export")
    assert r.returncode == 0, r.stderr
    assert not folder.exists()  # a dry-run creates nothing
    r = kompose("shop", "db:export")
    assert r.returncode == 0, r.stderr
    (first,) = dumps_in(folder)
    assert folder.stat().st_mode & 0o777 == 0o700
    assert dumps_in(stack) == [] and not any(p.name.endswith(".partial")
                                             for p in folder.iterdir())
    assert (stack / "exported").read_text() == f"{folder / first}\n"  # the hook's $1
    assert (stack / ".kompose.lock").is_file() and not (folder / ".kompose.lock").exists()

    listing = kompose("shop", "db:list").stdout
    assert f"shop ({name}): 1 dump in {folder}" in listing and first in listing
    doc = json.loads(kompose("--json", "shop", "db:list").stdout)
    assert doc["stacks"][0]["dump_dir"] == str(folder) and doc["stacks"][0]["error"] is None
    assert [d["file"] for d in doc["stacks"][0]["dumps"]] == [str(folder / first)]
    stacks = json.loads(kompose("--list", "--json").stdout)["stacks"]
    assert stacks[0]["dumps"] == 1
    status = json.loads(kompose("--status", "--json", "shop").stdout)["stacks"][0]
    assert status["newest_dump"]["file"] == str(folder / first)
    assert complete(root, "kompose shop db:import ") == [first]

    # Import: the newest dump there, and a bare FILE name found there.
    with pg.connect(name) as conn:
        conn.execute("DELETE FROM items")
    r = kompose("shop", "db:import")
    assert r.returncode == 0, r.stderr
    assert len(pg.rows(name)) == 30 and not (stack / ".kompose-import.json").exists()
    with pg.connect(name) as conn:
        conn.execute("DELETE FROM items WHERE id > 10")
    r = kompose("shop", "db:import", first)
    assert r.returncode == 0, r.stderr
    assert len(pg.rows(name)) == 30
    # Verify: the newest dump there, and an archive written there (its manifest beside it).
    r = kompose("shop", "db:verify")
    assert r.returncode == 0 and f"{first} restores without error" in r.stderr, r.stderr
    assert kompose("shop", "db:export", "--format", "custom").returncode == 0
    (archive,) = [p.name for p in folder.glob(f"{name}_*Z.dump")]
    assert (folder / f"{archive}.json").is_file() and not list(stack.glob("*.dump*"))
    r = kompose("shop", "db:verify")
    assert r.returncode == 0 and f"{archive} restores without error" in r.stderr, r.stderr
    (folder / archive).unlink()
    (folder / f"{archive}.json").unlink()

    # A dump left in the stack folder is no longer this stack's dump: cleanup counts the
    # dump folder only.
    assert kompose("shop", "db:export").returncode == 0
    stale = stack / f"{name}_20000101_000000Z.sql"
    shutil.copy(folder / first, stale)
    r = kompose("shop", "db:cleanup", "--keep-last", "1")
    assert r.returncode == 0, r.stderr
    assert f"deleted {first}" in r.stderr and len(dumps_in(folder)) == 1
    assert stale.exists()


def test_a_missing_db_dump_dir_fails_that_stack_before_pg_dump(tmp_path: Path,
                                                               pg: Postgres) -> None:
    name = pg.new_name()
    pg.create(name, rows=3)
    share = tmp_path / "nas" / "kompose"  # the share is not mounted: nas/ is empty
    (tmp_path / "nas").mkdir()
    root = make_stacks(tmp_path / "root", {
        "shop": {"compose.yaml": pg.compose,
                 ".env": pg.env_text(name) + f"DB_DUMP_DIR={share}\n", "hooks.sh": HOOKS},
        "blog": {"compose.yaml": pg.compose, ".env": pg.env_text(name)}})
    line = (f"DB_DUMP_DIR {share} does not exist (a share that is not mounted?); kompose "
            f"creates {share / 'shop'} in it but never DB_DUMP_DIR itself")

    r = run_kompose("--root", str(root), "*", "db:export")
    assert r.code == 1, r.err
    assert line in r.err and "✗ shop failed at command (exit 1" in r.err
    assert "pg_dump --no-password" in r.err  # blog's export ran ...
    assert r.err.count("pg_dump --no-password") == 1  # ... shop's never started
    assert len(dumps_in(root / "blog")) == 1 and dumps_in(root / "shop") == []
    assert not share.exists() and not (root / "shop" / "exported").exists()

    # A dry-run says so and goes on (a pre hook of the real run may mount the share).
    r = run_kompose("--root", str(root), "-n", "shop", "db:export")
    assert r.code == 0 and f"warning: {line}" in r.err, r.err
    for command in ("db:import", "db:cleanup"):
        r = run_kompose("--root", str(root), "shop", command)
        assert r.code == 1 and line in r.err, (command, r.err)
    r = run_kompose("--root", str(root), "*", "db:list")
    assert r.code == 1 and f"✗ shop ({name}): {line}" in r.out and "blog (" in r.out, r.out
    listed = run_kompose("--root", str(root), "--list").out
    assert "? (no DB_DUMP_DIR)" in next(x for x in listed.splitlines() if x.startswith("shop"))
    assert complete(root, "kompose shop db:import ") == []
    assert not share.exists()  # nothing above created it

    # The check comes after the pre hooks: one that mounts the share is in time.
    (root / "shop" / "hooks.sh").write_text(
        HOOKS + f"hook_pre_db_export() {{ mkdir '{share}'; }}\n")
    r = run_kompose("--root", str(root), "shop", "db:export")
    assert r.code == 0, r.err
    assert len(dumps_in(share / "shop")) == 1


def readme_hook() -> str:
    text = (REPO / "README.md").read_text()
    match = re.search(r"<!-- example: restic-hook -->\n```bash\n(.*?)\n```", text, re.DOTALL)
    assert match, "README.md has no restic hook example"
    return match[1] + "\n"


def test_readme_restic_hook_sends_each_dump_off_the_machine(tmp_path: Path,
                                                            pg: Postgres) -> None:
    restic = shutil.which("restic")
    if restic is None:
        _missing("restic (apt-get install -y restic)")
    assert restic
    name = pg.new_name()
    pg.create(name, rows=12)
    password_file = tmp_path / "restic-password"
    password_file.write_text("kompose-offsite-test\n")
    password_file.chmod(0o600)
    repo = tmp_path / "repo"
    restic_env = {"RESTIC_REPOSITORY": str(repo), "RESTIC_PASSWORD_FILE": str(password_file),
                  "RESTIC_CACHE_DIR": str(tmp_path / "cache")}
    subprocess.run([restic, "init"], env={**os.environ, **restic_env}, capture_output=True,
                   check=True)
    (tmp_path / "nas").mkdir()
    root = make_stacks(tmp_path / "root", {
        # Exactly the README's hook, and its .env lines with a local repository.
        "hooks.sh": readme_hook(),
        ".env": "DB_DUMP_DIR=../nas\n" + "".join(f"{k}={v}\n" for k, v in restic_env.items()),
        "shop": {"compose.yaml": pg.compose, ".env": pg.env_text(name)}})
    folder = tmp_path / "nas" / "shop"
    for _ in range(2):
        r = run_kompose("--root", str(root), "shop", "db:export")
        assert r.code == 0, r.err
        assert "[HOOK] post_db_export" in r.err
    dumps = dumps_in(folder)
    assert len(dumps) == 2

    def ask(*args: str) -> str:
        return subprocess.run([restic, *args], env={**os.environ, **restic_env},
                              capture_output=True, text=True, check=True).stdout

    snapshots = json.loads(ask("snapshots", "--json"))
    assert len(snapshots) == 2
    assert all(sorted(s["tags"]) == ["kompose", "stack=shop"] for s in snapshots)
    # each dump with its manifest (the README's hook sends both)
    assert sorted(p for s in snapshots for p in s["paths"]) == sorted(
        str(folder / n) for d in dumps for n in (d, d + ".json"))
    for dump in dumps:
        held = subprocess.run([restic, "dump", "--path", str(folder / dump), "latest",
                               str(folder / dump)],
                              env={**os.environ, **restic_env}, capture_output=True,
                              check=True).stdout
        assert held == (folder / dump).read_bytes()
    assert "kompose-offsite-test" not in r.err + r.out

    # A failing restic fails the stack: the dump that did not leave is not reported as fine.
    shutil.rmtree(repo)
    r = run_kompose("--root", str(root), "shop", "db:export")
    assert r.code == 1 and "✗ shop failed at post" in r.err, r.err
