"""Colours follow NO_COLOR, --no-color and whether stderr is a terminal (SPEC.md §6)."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import COMPOSE, Shim, make_stacks


def run_on_terminal(args: list[str], env: dict[str, str]) -> str:
    """Run kompose with stdout and stderr on a pseudo-terminal; return what it showed."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "kompose_py", *args], stdin=subprocess.DEVNULL,
                            stdout=follower, stderr=follower, env={**os.environ, **env})
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(leader)
    return b"".join(chunks).decode()


@pytest.mark.parametrize(("extra_args", "extra_env", "colored"), [
    ([], {}, True),
    (["--no-color"], {}, False),
    ([], {"NO_COLOR": "1"}, False),
])
def test_colour_rules(tmp_path: Path, shim: Shim, extra_args: list[str],
                      extra_env: dict[str, str], colored: bool) -> None:
    root = make_stacks(tmp_path / "r", {"a": {"compose.yaml": COMPOSE}})
    shown = run_on_terminal(["--root", str(root), *extra_args, "a", "ps"],
                            {**shim.env(), **extra_env})
    assert "Summary: 1 succeeded" in re.sub(r"\x1b\[[0-9;]*m", "", shown)
    assert ("\x1b[" in shown) == colored
