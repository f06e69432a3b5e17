"""Colours follow NO_COLOR, --no-color and whether stderr is a terminal."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import COMPOSE, Shim, make_stacks, run_on_terminal


@pytest.mark.parametrize(("extra_args", "extra_env", "colored"), [
    ([], {}, True),
    (["--no-color"], {}, False),
    ([], {"NO_COLOR": "1"}, False),
])
def test_colour_rules(tmp_path: Path, shim: Shim, extra_args: list[str],
                      extra_env: dict[str, str], colored: bool) -> None:
    root = make_stacks(tmp_path / "r", {"a": {"compose.yaml": COMPOSE}})
    _, shown = run_on_terminal("--root", str(root), *extra_args, "a", "ps",
                               env={**shim.env(), **extra_env})
    assert "Summary: 1 succeeded" in re.sub(r"\x1b\[[0-9;]*m", "", shown)
    assert ("\x1b[" in shown) == colored
