"""Docker Compose itself is the oracle for .env files: every value kompose reads must be the
value ``docker compose config --environment`` reads from the same file with the same shell
environment, and every file Compose refuses kompose refuses too (issue: "each stack runs
exactly as Docker Compose would run it")."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from kompose_py.envfiles import read_env_file
from kompose_py.errors import ConfigError
from tests.conftest import make_stacks, run_kompose

# One statement per case; the key of the case is V<n>. Definitions every case may use:
BASE = "A=x\nEMPTY=\nSPACED=a b\n"
CASES = [
    "V=plain", "V = spaced around", "V: yaml style", "export V=exported", "export  V=two spaces",
    "V=", "V=  ", 'V=""', "V=''", "V=a b c", "V=abc # comment", "V=a#b", "V=a\t#tab comment",
    'V="q # not a comment"', "V='single # kept'", 'V="x" # after quotes',
    # interpolation
    "V=$A", "V=${A}", "V=$A-suffix", "V=${A}x${A}", "V=$A.$A", "V=pre${UNSET}post",
    "V=${A:-d}", "V=${UNSET:-d}", "V=${EMPTY:-d}", "V=${A-d}", "V=${UNSET-d}", "V=${EMPTY-d}",
    "V=${A:+alt}", "V=${UNSET:+alt}", "V=${EMPTY:+alt}", "V=${A+alt}", "V=${UNSET+alt}",
    "V=${EMPTY+alt}", "V=${A:?must}", "V=${EMPTY?may be empty}", "V=${A?}",
    "V=${UNSET:-${A}-nested}", "V=${UNSET-${UNSET2:-deep}}", "V=${A:-${B:-${C:-deep}}}",
    "V=${UNSET:+${A}}", "V=${A:+[${A}]}", "V=${UNSET:-a b} c", "V=${UNSET:-a:b}",
    "V=${UNSET:-a}}", "V=${A}}", "V=${UNSET:-{x}}", "V=${UNSET:-}", "V=${UNSET:-$$}",
    "V=${UNSET:-\"q\"}", "V=${UNSET:-'q'}", "V=${SPACED:-x}", "V=$SPACED",
    "V=$$", "V=$$A", "V=$$$A", "V=$", "V=a$", "V=$A$", "V=$1abc", "V=$ A", "V=$A_B",
    "V=${A_B:-ab}", "V=\\$A", "V=a\\nb", "V=a\\", "V=`echo hi`", "V=$(echo hi)",
    # quotes and escapes
    "V='$A literal'", "V='a\\nb'", "V='say \"hi\"'", "V='a\\'b'", "V='$$'",
    'V="$A dq"', 'V="a\\nb"', 'V="a\\tb\\\\c\\"d"', 'V="\\$A"', 'V="\\\\$A"', 'V="\\x"',
    'V="\\\\"', 'V="a\\\'b"', 'V="\\b"', 'V="$"', 'V="it\'s"', 'V="a\nb"', "V='a\nb'",
    'V="  spaced  "', "V=é", 'V="${UNSET:-x y}"', "V='a'b", 'V="a"b',
    # found by a hostile pass: every { counts, Unicode spaces, keys, CR inside quotes
    "V=${UNSET:-{a}b}", 'V="${UNSET:-\\${A}x}"', "V=abc\u202f", "V=abc\u3000\u2028",
    "\u3000V=1", "V[0]=x", "V]=x", "V\tX=tab in key", 'V="x\r\ny"', "V='x\r\ny'",
    "V=crlf\r", 'V="\\$"',
    # inherited
    "V", "OS_ONLY", "SHELL_WINS=from file", "V=${OS_ONLY}", "V=${SHELL_WINS}",
]
# The shell environment Compose runs with (kompose's "higher layers" for a stack .env).
SHELL = {"OS_ONLY": "fromos", "SHELL_WINS": "from shell"}
ERRORS = {
    "V=${UNSET:?must be set}": "required variable UNSET is missing a value: must be set",
    "V=${UNSET?no}": "required variable UNSET is missing a value: no",
    "V=${EMPTY:?empty not ok}": "required variable EMPTY is missing a value: empty not ok",
    "V=${UNSET:?}": "required variable UNSET is missing a value",
    "V=${A": "no closing brace",
    "V=${A/x/y}": "invalid expression",
    "V=${}": "invalid expression",
    "V=${1A}": "invalid expression",
    "V=${ A }": "invalid expression",
    "V=${A:0:1}": "invalid expression",
    'V="unterminated': "unterminated double-quoted value",
    "V='unterminated": "unterminated single-quoted value",
    'V="${A:-"q"}"': "",
    "V=${A:-${UNSET:?need}}": "required variable UNSET is missing a value: need",
    "V=${UNSET:+${U2:?inner}}": "required variable U2 is missing a value: inner",
    'V="${UNSET:-a\\nb}"': "invalid expression",
    'V="${UNSET:-a\nb}"': "invalid expression",
    "V=${A:+{}${A}": "no closing brace",
}


def numbered(cases: list[str]) -> str:
    """The cases as one file, ``V`` renamed ``V<n>`` so that each keeps its own key."""
    lines = []
    for n, case in enumerate(cases):
        lines.append(re.sub(r"^(\s*(?:export\s+)?)V(?=[^A-Za-z0-9_]|$)", rf"\g<1>V{n}", case))
    return BASE + "\n".join(lines) + "\n"


def compose_environment(folder: Path, shell: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), **shell}
    proc = subprocess.run(["docker", "compose", "config", "--environment"], cwd=folder,
                          env=env, capture_output=True, timeout=60)
    # Decoded by hand: text=True would turn a \r\n inside a value into \n.
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(),
                                       proc.stderr.decode())


def parse_environment(output: str, keys: set[str]) -> dict[str, str]:
    """``KEY=value`` lines; a line that starts no known key continues a multi-line value."""
    found: dict[str, str] = {}
    current = None
    for line in output.removesuffix("\n").split("\n"):
        key = line.split("=", 1)[0]
        if "=" in line and (key in keys or re.fullmatch(r"[A-Z_][A-Z0-9_]*", key)):
            current = key if key in keys else None
            if current:
                found[current] = line.split("=", 1)[1]
        elif current is not None:
            found[current] += "\n" + line
    return found


@pytest.fixture
def folder(tmp_path: Path, docker_engine: None) -> Path:
    (tmp_path / "compose.yaml").write_text("services:\n  app:\n    image: busybox:latest\n")
    return tmp_path


def test_every_value_matches_compose(folder: Path) -> None:
    (folder / ".env").write_text(numbered(CASES))
    proc = compose_environment(folder, SHELL)
    assert proc.returncode == 0, proc.stderr
    ours = read_env_file(folder / ".env", above=SHELL)
    keys = set(ours) | {f"V{n}" for n in range(len(CASES))}
    theirs = parse_environment(proc.stdout, keys)
    # Compose reports the final value of a key, the shell's when the shell has it.
    final = {k: SHELL.get(k, v) for k, v in ours.items()}
    mismatches = {CASES[int(k[1:])] if re.fullmatch(r"V\d+", k) else k: (final.get(k), v)
                  for k, v in theirs.items() if final.get(k) != v}
    missing = sorted(set(final) - set(theirs))
    assert not mismatches, f"(kompose, compose) differ: {mismatches}"
    assert not missing, f"kompose has keys compose has not: {missing}"
    assert len(theirs) > len(CASES) // 2  # the comparison really compared


@pytest.mark.parametrize("case", list(ERRORS))
def test_compose_and_kompose_refuse_the_same_files(folder: Path, case: str) -> None:
    (folder / ".env").write_text(BASE + "GOOD=1\n" + case + "\n")
    proc = compose_environment(folder, {})
    assert proc.returncode != 0, f"compose accepted {case!r}: {proc.stdout}"
    with pytest.raises(ConfigError) as err:
        read_env_file(folder / ".env")
    where = f"{folder / '.env'}:5: "
    assert err.value.message.startswith(where)
    if "unterminated" not in ERRORS[case]:
        assert err.value.message.startswith(where + "V: ")  # names the key, not its value
    assert ERRORS[case] in err.value.message
    if "required variable" in ERRORS[case]:
        assert ERRORS[case] in proc.stderr  # the same words as Compose's


def test_secret_values_never_appear_in_errors(folder: Path) -> None:
    (folder / ".env").write_text("DB_PASSWORD=\"hunter2-very-secret\nNEXT=1\n")
    with pytest.raises(ConfigError) as err:
        read_env_file(folder / ".env")
    assert "hunter2" not in err.value.message
    assert ":1: unterminated double-quoted value" in err.value.message
    (folder / ".env").write_text("GOOD=1\nmy pasted s3cret-passphrase\n")
    with pytest.raises(ConfigError) as err:
        read_env_file(folder / ".env")
    assert "s3cret" not in err.value.message and ":2: " in err.value.message
    (folder / ".env").write_text("API_TOKEN=abc${oops-secret-part\n")
    with pytest.raises(ConfigError) as err:
        read_env_file(folder / ".env")
    assert "oops-secret-part" not in err.value.message and "API_TOKEN" in err.value.message


@pytest.mark.parametrize("line", ["URL=${UNSET:?$DB_PASSWORD}",
                                  "URL=${DB_PASSWORD:+${UNSET:?$DB_PASSWORD}}",
                                  "URL=${postgres://u:S3cretPw99@h}"])
def test_a_secret_quoted_by_an_error_is_masked(tmp_path: Path, line: str) -> None:
    (tmp_path / ".env").write_text(line + "\n")
    with pytest.raises(ConfigError) as err:
        read_env_file(tmp_path / ".env", above={"DB_PASSWORD": "S3cretPw99"})
    assert "S3cretPw99" not in err.value.message and "URL: " in err.value.message


@pytest.mark.parametrize(("folder", "env", "compose_name"), [
    ("_shop", {}, None),
    ("Web.App", {}, None),
    ("shop", {"COMPOSE_PROJECT_NAME": "other"}, None),
    ("plain", {}, "MyProj"),
    ("plain", {"PN": "Zed"}, "${PN:-fallback}"),
    ("plain", {"COMPOSE_PROJECT_NAME": "wins"}, "'_Quoted.Name'"),
])
def test_project_name_is_composes(tmp_path: Path, docker_engine: None, folder: str,
                                  env: dict[str, str], compose_name: str | None) -> None:
    """The project name kompose uses (which containers are a stack's own, env:check's clash
    warning) is the one `docker compose config` reports, wherever it comes from."""
    import json
    import subprocess

    from kompose_py.backends.compose import project_name
    from kompose_py.stacks import discover

    body = "services:\n  a:\n    image: busybox\n"
    if compose_name is not None:
        body = f"name: {compose_name}\n" + body
    make_stacks(tmp_path, {folder: {"compose.yaml": body}})
    (stack,) = discover(tmp_path)
    oracle = subprocess.run(["docker", "compose", "config", "--format", "json"],
                            cwd=stack.path, env={**os.environ, **env}, capture_output=True,
                            text=True, check=True)
    assert project_name(stack, env) == json.loads(oracle.stdout)["name"]


def test_env_check_warns_of_stacks_that_share_a_project_name(tmp_path: Path) -> None:
    """`_shop` and `shop` are one Compose project (`shop`): env:check says so."""
    make_stacks(tmp_path, {"_shop": {"compose.yaml": "services: {}\n"},
                           "shop": {"compose.yaml": "services: {}\n"}})
    r = run_kompose("--root", str(tmp_path), "*", "env:check")
    assert "compose project name 'shop' is also shop's" in r.out, r.out
