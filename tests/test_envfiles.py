"""The environment of a stack: parsing as data, references, precedence."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kompose_py.envfiles import EnvBuilder, read_env_file
from kompose_py.errors import ConfigError
from kompose_py.masking import mask, secret_values
from tests.conftest import COMPOSE, make_stacks, run_kompose


@pytest.mark.parametrize(("text", "base", "expected"), [
    ("A=1", {}, {"A": "1"}),
    ("A = spaced", {}, {"A": "spaced"}),
    ('A="double quoted # not a comment"', {}, {"A": "double quoted # not a comment"}),
    ("A='single ${HOME} stays'", {"HOME": "/h"}, {"A": "single ${HOME} stays"}),
    ("export A=exported", {}, {"A": "exported"}),
    ("# comment\n\nA=1 # trailing comment", {}, {"A": "1"}),
    ("A=${B}", {"B": "from-base"}, {"A": "from-base"}),
    ("A=${B:-fallback}", {}, {"A": "fallback"}),
    ("A=${B:-fallback}", {"B": "set"}, {"A": "set"}),
    ("B=first\nA=${B}-second", {"B": "base"}, {"B": "first", "A": "first-second"}),
    ('A="multi\nline"', {}, {"A": "multi\nline"}),
    ('A="tab\\tnewline\\n"', {}, {"A": "tab\tnewline\n"}),
    ("A=\ufeffnot-a-bom", {}, {"A": "\ufeffnot-a-bom"}),
    ("A=1\r\nB=2\r\n", {}, {"A": "1", "B": "2"}),
    ("A=", {}, {"A": ""}),
    ("BARE", {}, {}),
])
def test_read_env_file_cases(tmp_path: Path, text: str, base: dict[str, str],
                             expected: dict[str, str]) -> None:
    path = tmp_path / ".env"
    path.write_bytes(text.encode())
    assert read_env_file(path, base) == expected


def test_bom_at_start_of_file_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_bytes(b"\xef\xbb\xbfA=1\n")
    assert read_env_file(path, {}) == {"A": "1"}


def test_nothing_is_executed(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    path = tmp_path / ".env"
    path.write_text(f"A=$(touch {marker})\nB=`touch {marker}`\nC=\"$(touch {marker})\"\n")
    values = read_env_file(path, {})
    assert values["A"] == f"$(touch {marker})"
    assert values["B"] == f"`touch {marker}`"
    assert not marker.exists()


def test_unparsable_line_reports_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("GOOD=1\n# fine\nBAD='unterminated\n")
    with pytest.raises(ConfigError) as err:
        read_env_file(path, {})
    assert err.value.message == f"{path}:3: unterminated single-quoted value (a ' is missing)"


def test_precedence_stack_environ_root_network_overrides(tmp_path: Path) -> None:
    """Later wins: stack .env < environment < root .env < --network < -e."""
    root = make_stacks(tmp_path, {
        ".env": "A=root\nC=root\nD=root\nSHARED=root-value\nJWT_TOKEN=real-token\n",
        "s": {"compose.yaml": COMPOSE,
              ".env": "A=stack\nB=stack\nC=stack\nE=stack\nUSES=${SHARED}/x\n"
                      "JWT_TOKEN=changeme\nSAME=same\nNETWORK_NAME=stack\n"},
    })
    environ = {"A": "environ", "E": "environ", "F": "environ", "SAME": "same",
               "NETWORK_NAME": "environ"}
    builder = EnvBuilder(environ, root / ".env", "net", (("C", "cli"), ("C", "later")))
    env = builder.for_stack(root / "s" / ".env")
    v = env.values
    assert (v["A"], v["B"], v["C"], v["D"], v["E"], v["F"]) == \
        ("root", "stack", "later", "root", "environ", "environ")
    assert v["JWT_TOKEN"] == "real-token"  # the root's secret, not the stack's placeholder
    assert v["NETWORK_NAME"] == "net"
    assert v["USES"] == "root-value/x"  # a stack .env may use a root .env value
    assert env.files == (root / ".env", root / "s" / ".env")
    assert env.own_keys == {"A", "B", "C", "E", "USES", "JWT_TOKEN", "SAME", "NETWORK_NAME"}
    assert env.sources["B"] == "stack .env" and env.sources["F"] == "environment"
    assert (env.sources["A"], env.sources["C"], env.sources["NETWORK_NAME"]) == \
        ("root .env", "-e", "--network")
    # Shadowed: set by the stack .env, replaced by a higher layer with another value.
    assert env.shadowed == {"A": "root .env", "C": "-e", "E": "environment",
                            "JWT_TOKEN": "root .env", "NETWORK_NAME": "--network"}


def test_stack_env_references_see_higher_layers_first(tmp_path: Path) -> None:
    """As Compose reads a project .env: the shell (here every higher layer) first."""
    root = make_stacks(tmp_path, {".env": "HOST=db.internal\n", "s": {
        "compose.yaml": COMPOSE, ".env": "HOST=localhost\nURL=pg://${HOST}/app\n"}})
    env = EnvBuilder({}, root / ".env").for_stack(root / "s" / ".env")
    assert env.values["URL"] == "pg://db.internal/app"


@pytest.mark.parametrize("kind", ["dangling link", "folder", "fifo", "loop"])
def test_a_env_that_cannot_be_read_is_an_error_not_absent(tmp_path: Path, kind: str) -> None:
    root = make_stacks(tmp_path / "r", {"s": {"compose.yaml": COMPOSE}})
    target = root / "s" / ".env"
    if kind == "dangling link":
        target.symlink_to(tmp_path / "gone.env")
    elif kind == "folder":
        target.mkdir()
    elif kind == "fifo":
        os.mkfifo(target)
    else:
        target.symlink_to(target)
    r = run_kompose("--root", str(root), "s", "db:export", timeout=30)
    assert r.code == 2, r.err
    assert f"{target}:" in r.err or f"{target} " in r.err
    assert "skipped" not in r.err


def test_masking() -> None:
    env = {"DB_PASSWORD": "hunter22", "API_KEY": "k1", "Secret_thing": "abc-def", "PLAIN": "x"}
    secrets = secret_values(env)
    assert mask("pw hunter22 key k1 thing abc-def plain x", secrets) == \
        "pw *** key *** thing *** plain x"
    assert mask("k1x stays", secrets) == "k1x stays"  # short values: whole words only


def test_unparsable_stack_env_is_reported_before_anything_runs(tmp_path: Path, shim) -> None:
    root = make_stacks(tmp_path / "r", {
        "a": {"compose.yaml": COMPOSE},
        "b": {"compose.yaml": COMPOSE, ".env": "OK=1\nNOT VALID\"\n"},
    })
    r = run_kompose("--root", str(root), "*", "up", "-d", env=shim.env())
    assert r.code == 2
    assert f"{root}/b/.env:2: a variable name cannot contain a space" in r.err
    assert shim.calls() == []  # stack a did not start either


@pytest.mark.parametrize("line", [
    "DSN=${X:-postgres://app:Hunter2Secret@db/app",   # no closing brace
    "DSN=postgres://app:Hunter2Secret@${DB_HOST",     # the ${ after the secret
    "DSN=${Hunter2Secret x}",                          # an invalid expression
    "DSN=${X:-${Hunter2Secret z}}",                    # nested
    "DSN=a${Hunter2Secret:0:1}",
])
def test_parse_errors_never_echo_the_value(tmp_path: Path, line: str) -> None:
    """A value may hold a credential that no key name marks as secret (issue 12.8): an error
    says where, never what."""
    path = tmp_path / ".env"
    path.write_text(f"A=1\n{line}\n")
    with pytest.raises(ConfigError) as err:
        read_env_file(path, {})
    assert err.value.message.startswith(f"{path}:2: DSN: invalid")
    assert "Hunter2" not in err.value.message and "character" in err.value.message
