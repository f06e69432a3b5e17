"""Dry-run: the plan is printed, nothing runs, nothing is written."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import COMPOSE, Shim, make_stacks, run_kompose

TRAP = 'touch "{marker}.$KOMPOSE_HOOK"'


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob("*")}


def test_dry_run_prints_the_plan_and_touches_nothing(tmp_path: Path, shim: Shim) -> None:
    marker = tmp_path / "hook-ran"
    every = "".join(f"hook_{phase}_up() {{ {TRAP.format(marker=marker)}; }}\n"
                    for phase in ("pre", "post", "error", "finally"))
    root = make_stacks(tmp_path / "r", {
        ".env": "DB_PASSWORD=root-secret-pw\n",
        "hooks.sh": f"touch {marker}.root-sourced\n" + every,
        "a": {"compose.yaml": COMPOSE, ".env": "API_TOKEN=stack-token-value\n",
              "hooks.sh": f"touch {marker}.sourced\n" + every},
        "b": {"docker-compose.yml": COMPOSE},
    })
    before = snapshot(root)
    tmp_before = set(os.listdir(tmp_path))
    r = run_kompose("--root", str(root), "--dry-run", "-e", "X_KEY=cli-key-value", "*", "up",
                    "-d", "--password=stack-token-value", env=shim.env())
    assert r.code == 0, r.err
    assert shim.calls() == []
    assert not list(tmp_path.glob("hook-ran*"))
    assert snapshot(root) == before
    assert set(os.listdir(tmp_path)) == tmp_before
    err = r.err
    assert "env files: .env, a/.env" in err
    assert "env files: .env\n" in err  # stack b has no .env of its own
    assert "[HOOK] pre_up up -d --password=*** (root hooks.sh)  would run" in err
    assert "[HOOK] error_up up -d --password=***  would run on failure" in err
    assert "[HOOK] finally_up up -d --password=*** (root hooks.sh)  would run" in err
    assert err.count("$ docker compose up -d --password=***  would run") == 2
    assert "overrides: X_KEY=***" in err
    for secret in ("root-secret-pw", "stack-token-value", "cli-key-value"):
        assert secret not in err + r.out
    assert "Summary (dry-run, nothing ran): 2 succeeded, 0 failed, 0 skipped out of 2 stacks" in err
    # Hook order in the plan: root pre first; stack post before root post.
    plan = [line.strip().split()[1] + ("@root" if "root hooks.sh" in line else "")
            for line in err.splitlines() if "[HOOK]" in line and "would run" in line][:5]
    assert plan == ["pre_up@root", "pre_up", "post_up", "post_up@root", "error_up"]


def test_dry_run_of_an_invalid_plan_fails(tmp_path: Path, shim: Shim) -> None:
    root = make_stacks(tmp_path / "r", {"a": {"compose.yaml": COMPOSE, ".env": "A='open\n"}})
    r = run_kompose("--root", str(root), "-n", "a", "up", env=shim.env())
    assert r.code == 2
    assert ".env:1: unterminated single-quoted value" in r.err
