"""``db:cleanup`` with restic forget's rules, through the real CLI: dumps named with chosen UTC
times in a stack whose .env has only DB_NAME (cleanup needs no server), the policy from the
options or the DB_KEEP_* variables, and exactly what a dry-run and a real run say and do. The
rules themselves, case by case and against the real restic, are in tests/test_retention.py."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
from pathlib import Path

import pytest

from kompose_py.db.dumpfiles import remove_dump, sweep_leftovers
from kompose_py.db.manifest import Manifest, digest, write_manifest
from kompose_py.files import owner_tag
from tests.conftest import COMPOSE, REPO, Result, dump_text, make_stacks, run_kompose

COMPLETE = gzip.compress(dump_text().encode())
# The README's worked example: nightly at 02:00 UTC, one more by hand, one cut off.
EXAMPLE = ["20250115_020000", "20250128_020000", "20250131_020000", "20250203_020000",
           "20250207_020000", "20250209_020000", "20250210_020000", "20250210_140000",
           "20250211_020000", "20250212_020000"]
CUT_OFF = "shop_20250212_140000Z.sql.gz"
EXAMPLE_POLICY = "DB_KEEP_DAILY=3\nDB_KEEP_WEEKLY=2\nDB_KEEP_MONTHLY=6\n"

HOOKS = "hook_pre_db_cleanup() { echo ran >> \"$KOMPOSE_STACK_DIR/pre-ran\"; }\n"


def stack_root(tmp_path: Path, env: str = "", stamps: list[str] | None = None,
               root_env: str = "", hooks: str = HOOKS) -> tuple[Path, Path]:
    """A root with one database stack ``shop`` (DB_NAME=shop plus ``env``) holding complete
    gzip dumps at the given UTC stamps: (root, the stack folder)."""
    files: dict[str, object] = {f"shop_{s}Z.sql.gz": COMPLETE for s in stamps or []}
    tree: dict[str, object] = {"shop": {"compose.yaml": COMPOSE, ".env": "DB_NAME=shop\n" + env,
                                        "hooks.sh": hooks, **files}}
    if root_env:
        tree[".env"] = root_env
    root = make_stacks(tmp_path / "root", tree)
    return root, root / "shop"


def dumps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("shop_"))


def cleanup(root: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    return run_kompose("--root", str(root), "shop", "db:cleanup", *args, env=env)


def fates(err: str) -> list[str]:
    """The per-dump lines of a run: keep / would delete / deleted / leave."""
    return [line.strip() for line in err.splitlines()
            if re.match(r"\s+(keep |would delete |deleted |leave |could not delete )", line)]


def example_root(tmp_path: Path) -> tuple[Path, Path]:
    root, folder = stack_root(tmp_path, EXAMPLE_POLICY, EXAMPLE, hooks="")
    (folder / CUT_OFF).write_bytes(COMPLETE[:20])
    for name in ("shop_20250203_020000Z.sql.gz", "shop_20250131_020000Z.sql.gz"):
        seal(folder / name)  # a manifest beside it, which goes with it
    return root, folder


def seal(dump: Path) -> None:
    """A manifest for the dump's bytes (as an export writes one)."""
    sha, size, files = digest(dump)
    write_manifest(dump, Manifest(dump.name, "plain", "gzip", size, sha, "shop",
                                  "2025-01-01T00:00:00Z", "15.0", "15.0", {}, files=files))


def readme_example() -> list[str]:
    text = (REPO / "README.md").read_text()
    match = re.search(r"<!-- example: cleanup -->\n```console\n(.*?)\n```", text, re.DOTALL)
    assert match, "README.md has no cleanup example"
    return match[1].splitlines()


def test_readme_worked_example_dry_run_then_real(tmp_path: Path) -> None:
    root, folder = example_root(tmp_path)
    before = dumps(folder)
    r = cleanup(root, "--dry-run")
    assert r.code == 0, r.err
    shown = readme_example()
    # Every line of the README's output is what kompose prints, in that order.
    body = [line for line in shown[1:] if line.startswith("  ")]
    real = [line for line in r.err.splitlines() if line.startswith("  ")]
    assert real == body, r.err
    assert dumps(folder) == before  # a dry-run deletes nothing
    # --json: each dump's fate, as the lines say it
    plan = run_kompose("--root", str(root), "--json", "shop", "db:cleanup", "--dry-run")
    (stack,) = json.loads(plan.out)["stacks"]
    details = stack["details"]
    assert [f"keep {Path(k['file']).name}: {', '.join(k['reasons'])}"
            for k in details["kept"]] == [f for f in fates("\n".join(body))
                                          if f.startswith("keep ")]
    assert len(details["deleted"]) == 4 and details["not_deleted"] == []
    assert [Path(d["file"]).name for d in details["left_alone"]] == [CUT_OFF]
    assert details["policy"] == "keep 3 daily, 2 weekly, 6 monthly"

    r = cleanup(root)
    assert r.code == 0, r.err
    assert fates(r.err) == [line.replace("would delete", "deleted")
                            for line in fates("\n".join(body))], r.err
    assert "kept 6 of 10 complete dumps of shop; 1 incomplete left alone" in r.err
    assert dumps(folder) == sorted([
        "shop_20250115_020000Z.sql.gz", "shop_20250131_020000Z.sql.gz",
        "shop_20250131_020000Z.sql.gz.json", "shop_20250209_020000Z.sql.gz",
        "shop_20250210_140000Z.sql.gz", "shop_20250211_020000Z.sql.gz",
        "shop_20250212_020000Z.sql.gz", CUT_OFF])
    # Run again: the same policy finds nothing more to delete.
    r = cleanup(root)
    assert r.code == 0 and "deleted" not in r.err and "kept 6 of 6" in r.err, r.err


def test_options_replace_the_variables_whole(tmp_path: Path) -> None:
    root, folder = stack_root(tmp_path, "DB_KEEP_DAILY=30\n", EXAMPLE)
    r = cleanup(root, "--keep-last", "2", "--dry-run")
    assert r.code == 0, r.err
    assert "policy: keep 2 last (from the command line)" in r.err
    assert [f for f in fates(r.err) if f.startswith("keep")] == [
        "keep shop_20250211_020000Z.sql.gz: last 2",
        "keep shop_20250212_020000Z.sql.gz: last 2"]
    # --keep N is --keep-last N
    r = cleanup(root, "--keep", "2")
    assert r.code == 0, r.err
    assert dumps(folder) == ["shop_20250211_020000Z.sql.gz", "shop_20250212_020000Z.sql.gz"]


def test_variables_from_every_layer_and_the_default(tmp_path: Path) -> None:
    root, _ = stack_root(tmp_path, "DB_KEEP_DAILY=2\n", EXAMPLE,
                         root_env="DB_KEEP_MONTHLY=1\n")
    r = cleanup(root, "--dry-run", env={"DB_KEEP_LAST": "3"})
    assert r.code == 0, r.err
    assert ("policy: keep 3 last, 2 daily, 1 monthly (from DB_KEEP_LAST (environment); "
            "DB_KEEP_DAILY (stack .env); DB_KEEP_MONTHLY (root .env))") in r.err, r.err
    assert "keep shop_20250212_020000Z.sql.gz: last 3, daily 2025-02-12, monthly 2025-02" \
        in r.err
    # -e beats the layers below it; 0 (or empty) sets no rule: nothing left is the default.
    r = run_kompose("--root", str(root), "-e", "DB_KEEP_MONTHLY=0", "-e", "DB_KEEP_DAILY=",
                    "shop", "db:cleanup", "--dry-run")
    assert "policy: keep 1 last (kompose's default: no --keep-* option, and DB_KEEP_MONTHLY " \
           "set no rule)" in r.err, r.err
    root2, folder2 = stack_root(tmp_path / "two", "", EXAMPLE)
    r = cleanup(root2)
    assert r.code == 0, r.err
    assert "policy: keep 1 last (kompose's default: no --keep-* option, no DB_KEEP_* " \
           "variable)" in r.err
    assert dumps(folder2) == ["shop_20250212_020000Z.sql.gz"]


def test_keep_within_counts_from_the_newest_complete_dump(tmp_path: Path) -> None:
    # Years old, and the newest file is cut off: the span ends at 11 February 02:00.
    root, folder = stack_root(tmp_path, "DB_KEEP_WITHIN=1d12h\n",
                              ["20250209_130000", "20250209_150000", "20250211_020000"])
    (folder / "shop_20250213_000000Z.sql").write_text("SELECT 1;\n")  # no trailer
    r = cleanup(root)
    assert r.code == 0, r.err
    assert fates(r.err) == [
        "leave shop_20250213_000000Z.sql: not a complete dump (no pg_dump completion "
        "trailer (cut off?))",
        "deleted shop_20250209_130000Z.sql.gz",
        "keep shop_20250209_150000Z.sql.gz: within 1d12h of the newest",
        "keep shop_20250211_020000Z.sql.gz: within 1d12h of the newest"], r.err


def test_buckets_by_utc_for_old_local_time_names(tmp_path: Path) -> None:
    """kompose.sh's names are local time: 08:00 in Tokyo on 2 January is 23:00 UTC on
    1 January, the same UTC day as the Z dump of 1 January 12:00, and the later of the two."""
    root, folder = stack_root(tmp_path, "DB_KEEP_DAILY=5\n",
                              ["20241231_120000", "20250101_120000"])
    (folder / "shop_20250102_080000.sql.gz").write_bytes(COMPLETE)
    r = cleanup(root, env={"TZ": "Asia/Tokyo"})
    assert r.code == 0, r.err
    assert fates(r.err) == ["keep shop_20241231_120000Z.sql.gz: daily 2024-12-31",
                            "deleted shop_20250101_120000Z.sql.gz",
                            "keep shop_20250102_080000.sql.gz: daily 2025-01-01"], r.err


def test_minus_one_keeps_every_bucket(tmp_path: Path) -> None:
    root, folder = stack_root(tmp_path, "", EXAMPLE)
    r = cleanup(root, "--keep-daily=-1")
    assert r.code == 0, r.err
    assert len(dumps(folder)) == 9  # one a day: only 10 February 02:00 goes
    assert "shop_20250210_020000Z.sql.gz" not in dumps(folder)


@pytest.mark.parametrize(("args", "message"), [
    (["--keep", "0"], "--keep/--keep-last '0': expected a whole number ≥ 1 (-1: all)"),
    (["--keep-daily", "x"], "--keep-daily 'x': expected a whole number"),
    (["--keep-weekly", "-2"], "--keep-weekly '-2'"),
    (["--keep-within", "3w"], "--keep-within '3w': invalid unit 'w' after 3"),
    (["--keep-within", "0d"], "a span of 0 keeps nothing"),
    (["--keep-hourly"], "expected one argument"),
    (["--keep", "2", "--keep-last", "3"],
     "--keep-last 3: --keep-last is already given (--keep N is --keep-last N)"),
    (["--keep-daily", "7", "--keep-daily=3"], "--keep-daily 3: --keep-daily is already given"),
    (["--keep-within", "1d", "--keep-within", "2d"], "--keep-within is already given"),
])
def test_bad_options_are_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    root, folder = stack_root(tmp_path, "", EXAMPLE)
    r = cleanup(root, *args)
    assert r.code == 2 and message in r.err, r.err
    assert len(dumps(folder)) == len(EXAMPLE)


def test_bad_variable_fails_that_stack_before_its_hooks(tmp_path: Path) -> None:
    root, folder = stack_root(tmp_path, "DB_KEEP_DAILY=seven\n", EXAMPLE)
    make_stacks(root, {"blog": {"compose.yaml": COMPOSE, ".env": "DB_NAME=blog\n",
                                "blog_20250101_000000Z.sql.gz": COMPLETE,
                                "blog_20250102_000000Z.sql.gz": COMPLETE}})
    r = run_kompose("--root", str(root), "*", "db:cleanup")
    assert r.code == 1, r.err
    assert "✗ shop failed (exit 1, " in r.err
    assert "DB_KEEP_DAILY=seven: expected a whole number ≥ 0 (or -1 for all)" in r.err
    assert len(dumps(folder)) == len(EXAMPLE)  # never "delete by the default" instead
    assert not (folder / "pre-ran").exists()
    assert sorted(p.name for p in (root / "blog").glob("blog_*")) == [
        "blog_20250102_000000Z.sql.gz"]  # the other stack went on


def test_a_dump_that_cannot_be_deleted_fails_the_stack_and_the_rest_goes(
        tmp_path: Path) -> None:
    root, folder = stack_root(tmp_path, "", ["20250101_000000", "20250102_000000",
                                             "20250103_000000"])
    # Root may unlink anything in a folder whatever its mode: an immutable file may not be.
    oldest = folder / "shop_20250101_000000Z.sql.gz"
    subprocess.run(["chattr", "+i", str(oldest)], check=True)
    try:
        r = cleanup(root, "--keep-last", "1")
    finally:
        subprocess.run(["chattr", "-i", str(oldest)], check=True)
    assert r.code == 1, r.err
    assert f"could not delete {oldest.name}: Operation not permitted: {oldest}" in r.err, r.err
    assert "deleted shop_20250102_000000Z.sql.gz" in r.err
    assert dumps(folder) == [oldest.name, "shop_20250103_000000Z.sql.gz"]


def test_a_damaged_dump_is_never_the_one_kept(tmp_path: Path) -> None:
    """A dump whose bytes are not those its manifest lists (or whose manifest cannot be read)
    is left alone like an incomplete one: never counted, never deleted, said; the newest good
    one is kept, and the import passes over the damaged one."""
    root, folder = stack_root(tmp_path, "", ["20250101_000000", "20250102_000000",
                                             "20250103_000000", "20250104_000000"])
    newest, third = folder / "shop_20250104_000000Z.sql.gz", folder / "shop_20250103_000000Z.sql.gz"
    seal(newest)
    newest.write_bytes(newest.read_bytes() + gzip.compress(b"-- more\n"))  # still complete
    (folder / f"{third.name}.json").mkdir()  # a manifest that cannot be read
    r = cleanup(root, "--keep-last", "1")
    assert r.code == 0, r.err
    assert f"leave {newest.name}: does not match its manifest: " in r.err, r.err
    assert f"leave {third.name}: " in r.err
    assert "kept 1 of 2 complete dumps of shop; 2 not matching its manifest left alone" \
        in r.err, r.err
    assert dumps(folder) == ["shop_20250102_000000Z.sql.gz", third.name, f"{third.name}.json",
                             newest.name, f"{newest.name}.json"]
    plan = run_kompose("--root", str(root), "--dry-run", "shop", "db:import")
    assert f"skipped {newest.name}, newer than shop_20250102_000000Z.sql.gz: does not match " \
        f"its manifest" in plan.err, plan.err
    listed = run_kompose("--root", str(root), "shop", "db:list")
    assert f"{newest.name}" in listed.out and "DAMAGED: does not match its manifest" \
        in listed.out, listed.out


def test_remove_dump_takes_a_directory_dump_and_its_manifest(tmp_path: Path) -> None:
    folder = tmp_path / "dumps"
    folder.mkdir()
    tree = folder / "shop_20250101_000000Z.dir"
    tree.mkdir()
    for name in ("toc.dat", "3001.dat.gz", "3002.dat.gz"):
        (tree / name).write_bytes(b"data")
    (folder / "shop_20250101_000000Z.dir.json").write_text("{}")
    plain = folder / "shop_20250102_000000Z.sql"
    plain.write_text(dump_text())
    remove_dump(tree)
    assert sorted(p.name for p in folder.iterdir()) == [plain.name]
    remove_dump(plain)  # without a manifest
    assert list(folder.iterdir()) == []


def test_sweep_finishes_a_cut_short_delete(tmp_path: Path) -> None:
    folder = tmp_path / "dumps"
    folder.mkdir()
    # What a SIGKILL in the middle of remove_dump leaves: the renamed tree, half removed,
    # and a manifest whose dump is gone.
    left = folder / ".shop_20250101_000000Z.dir.4242.deleting"
    left.mkdir()
    (left / "3001.dat.gz").write_bytes(b"x")
    (folder / "shop_20250101_000000Z.sql.gz.json").write_text("{}")
    kept = {"shop_20250102_000000Z.sql", "shop_20250102_000000Z.sql.json", "notes.json",
            "other_20250101_000000Z.sql.json", ".shop_20250103_000000Z.sql.99.partial"}
    for name in kept:
        (folder / name).write_text(dump_text())
    # Another database's leftovers whose names start alike (DB_NAME shop_old): not shop's.
    dead = f"{owner_tag().rpartition('-')[0]}-999999999"
    theirs = {f".shop_old_20250101_000000Z.sql.{dead}.partial",
              ".shop_old_20250101_000000Z.dir.4242.deleting"}
    for name in theirs:
        (folder / name).mkdir()
    assert sorted(name for name, _ in sweep_leftovers(folder, "shop")) == [
        left.name, "shop_20250101_000000Z.sql.gz.json"]
    assert {p.name for p in folder.iterdir()} == kept | theirs
    assert sorted(name for name, _ in sweep_leftovers(folder, "shop_old")) == sorted(theirs)


def test_cleanup_sweeps_leftovers_and_says_so(tmp_path: Path) -> None:
    root, folder = stack_root(tmp_path, "", ["20250101_000000"])
    left = folder / ".shop_20241231_000000Z.dir.4242.deleting"
    left.mkdir()
    (left / "toc.dat").write_bytes(b"x")
    r = cleanup(root, "--dry-run")
    assert left.exists() and f"would remove {left.name}, left by a cleanup" in r.err
    r = cleanup(root)
    assert r.code == 0, r.err
    assert f"removed {left.name}, left by a cleanup that was cut short" in r.err
    assert not left.exists()


def test_the_options_are_the_rules() -> None:
    from kompose_py.db.retention import COUNT_RULES
    from kompose_py.db.upkeep import RULES

    assert (*COUNT_RULES, "within") == RULES


def test_policy_a_pre_hook_writes_is_the_one_used(tmp_path: Path) -> None:
    hook = 'hook_pre_db_cleanup() { echo DB_KEEP_LAST=2 >> "$KOMPOSE_ENV_FILE"; }\n'
    root, folder = stack_root(tmp_path, "DB_KEEP_LAST=5\n", EXAMPLE[:4], hooks=hook)
    r = cleanup(root)
    assert r.code == 0, r.err
    assert "policy: keep 2 last (from DB_KEEP_LAST (written by a pre hook))" in r.err, r.err
    assert len(dumps(folder)) == 2


def test_a_bad_variable_names_its_layer_and_never_shows_a_secret(tmp_path: Path) -> None:
    secret = "s3cret-keep-pw"
    root, folder = stack_root(tmp_path, f"DB_PASSWORD={secret}\nDB_KEEP_LAST=${{DB_PASSWORD}}\n",
                              EXAMPLE[:3])
    for args in ((), ("--json",)):
        r = run_kompose("--root", str(root), *args, "shop", "db:cleanup")
        assert r.code == 1, r.err
        assert secret not in r.out + r.err
        assert "DB_KEEP_LAST=***: expected a whole number" in r.out + r.err, r.out + r.err
        assert "(set in stack .env)" in r.out + r.err
    assert len(dumps(folder)) == 3
    # DB_KEEP_WITHIN=0 sets no rule, like a 0 count: kompose's default, the newest kept
    root, folder = stack_root(tmp_path / "zero", "DB_KEEP_WITHIN=0\n", EXAMPLE[:3])
    r = cleanup(root)
    assert r.code == 0 and "DB_KEEP_WITHIN set no rule" in r.err, r.err
    assert dumps(folder) == [f"shop_{EXAMPLE[2]}Z.sql.gz"]


def test_a_shared_dump_folder_is_locked_across_roots(tmp_path: Path) -> None:
    """Two kompose roots (or hosts) whose stack of the same name writes to one DB_DUMP_DIR:
    while one holds the dump folder's lock, the other's cleanup deletes nothing."""
    import fcntl

    nas = tmp_path / "nas"
    (nas / "shop").mkdir(parents=True)
    for stamp in EXAMPLE[:3]:
        (nas / "shop" / f"shop_{stamp}Z.sql.gz").write_bytes(COMPLETE)
    root_b, _ = stack_root(tmp_path / "b", f"DB_DUMP_DIR={nas}\n")
    # What root A's export holds while it runs: the same flock, on the same file.
    with open(nas / "shop" / ".kompose.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.write(b"kompose db:export (pid 1 on host-a, since now, for /srv/a/shop)")
        lock.flush()
        r = cleanup(root_b, "--keep-last", "1")
        assert r.code == 1, r.err
        assert f"shop is busy (its dump folder {nas / 'shop'} is in use): kompose db:export " \
               f"(pid 1 on host-a" in r.err, r.err
        assert len(list((nas / "shop").glob("shop_*"))) == 3
    r = cleanup(root_b, "--keep-last", "1")
    assert r.code == 0, r.err
    assert len(list((nas / "shop").glob("shop_*"))) == 1


def test_a_dump_folder_that_is_not_a_folder_is_said(tmp_path: Path) -> None:
    """DB_DUMP_DIR's folder for the stack is a dangling symlink (a share not mounted behind
    it) or a file: an error of that stack, never "there are no dumps"."""
    root, _ = stack_root(tmp_path, "DB_DUMP_DIR=dumps\n", root_env="")
    (root / "dumps").mkdir()
    (root / "dumps" / "shop").symlink_to(tmp_path / "not-mounted" / "shop")
    for command in ("db:cleanup", "db:list", "db:import"):
        r = run_kompose("--root", str(root), "shop", command)
        assert r.code == 1, (command, r.err)
        assert f"the dump folder {root / 'dumps' / 'shop'} is a symlink to nothing" \
            in r.out + r.err, (command, r.out, r.err)
    (root / "dumps" / "shop").unlink()
    (root / "dumps" / "shop").write_text("")
    r = run_kompose("--root", str(root), "shop", "db:export")
    assert r.code == 1 and "is not a folder" in r.err, r.err


def test_a_name_at_the_ends_of_the_calendar_is_no_dump(tmp_path: Path) -> None:
    """Old local-time names the local zone cannot place (year 1 west of UTC, 9999-12-31 east
    of it) are not dumps; the other stacks and the listing go on."""
    root, folder = stack_root(tmp_path, "", EXAMPLE[:1])
    (folder / "shop_00010101_000000.sql").write_text(dump_text())
    (folder / "shop_99991231_235959.sql").write_text(dump_text())
    for zone in ("America/New_York", "Asia/Kolkata"):
        r = run_kompose("--root", str(root), "shop", "db:list", env={"TZ": zone})
        assert r.code == 0, r.err
        assert "1 dump" in r.out and "internal error" not in r.out + r.err, r.out + r.err
