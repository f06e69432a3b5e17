"""Shell completion, really invoked: bash through the script Typer generates and a real bash,
zsh and fish through Typer's completion protocol (the variables their scripts set). And what a
completion call must not do: import psycopg or the command layer, or read hooks files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import COMPOSE, make_stacks, run_kompose

BIN = str(Path(sys.executable).parent)  # the `kompose` script of this environment


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_stacks(tmp_path / "stacks", {
        "db": {"compose.yaml": COMPOSE, "shop_20250101_000000.sql": "x",
               "shop_20250102_000000.sql.gz": "x", "notes.txt": "x"},
        "news": {"compose.yaml": COMPOSE},
        "web": {"compose.yaml": COMPOSE, "hooks.sh": "hook_pre_up() { :; }\n"},
    })


def bash_complete(root: Path, line: list[str]) -> list[str]:
    """COMPREPLY of the generated bash script for the words ``line`` (the last one being
    completed), with bash's own word splitting at ':'."""
    script = run_kompose("--show-completion", "bash",
                         env={"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}).out
    assert "_kompose_completion" in script
    words = " ".join(f"'{w}'" for w in line)
    program = f'''{script}
COMP_LINE="{' '.join(line)}"
COMP_WORDS=({words}); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
_kompose_completion kompose
printf '%s\\n' "${{COMPREPLY[@]}}"
'''
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    out = subprocess.run(["bash", "--norc", "--noprofile", "-c", program], cwd=root.parent,
                         env=env, capture_output=True, text=True, check=True).stdout
    return [w for w in out.splitlines() if w]


def test_bash_stack_names_after_comma_and_bang(root: Path) -> None:
    assert bash_complete(root, ["kompose", ""]) == ["db", "news", "web"]
    assert bash_complete(root, ["kompose", "n"]) == ["news"]
    assert bash_complete(root, ["kompose", "web,n"]) == ["web,news"]
    assert bash_complete(root, ["kompose", "*,!w"]) == ["*,!web"]
    assert bash_complete(root, ["kompose", "-n", "--network", "x", "w"]) == ["web"]


def test_bash_commands_options_and_dumps(root: Path) -> None:
    assert bash_complete(root, ["kompose", "web", "do"]) == ["down"]
    # bash splits "hooks:c" at ':' and replaces only what follows it.
    assert bash_complete(root, ["kompose", "web", "hooks", ":", "c"]) == ["check"]
    assert "up" in bash_complete(root, ["kompose", "web", ""])
    assert "--status" in bash_complete(root, ["kompose", "--st"])
    assert bash_complete(root, ["kompose", "db", "db", ":", "import", ""]) == [
        "shop_20250101_000000.sql", "shop_20250102_000000.sql.gz"]


def protocol(shell: str, line: str, cwd: Path, more: dict[str, str] | None = None) -> list[str]:
    env = {**os.environ, "_KOMPOSE_COMPLETE": f"complete_{shell}", "_TYPER_COMPLETE_ARGS": line,
           "_TYPER_COMPLETE_FISH_ACTION": "get-args", **(more or {})}
    out = subprocess.run([sys.executable, "-m", "kompose_py"], cwd=cwd, env=env,
                         capture_output=True, text=True, check=True).stdout
    return out.splitlines()


def test_fish_and_zsh(root: Path) -> None:
    fish = protocol("fish", "kompose web hooks:", root.parent)
    assert [w.split("\t")[0] for w in fish] == ["hooks:list", "hooks:check"]
    assert protocol("fish", "kompose web,", root.parent) == ["web,db", "web,news", "web,web"]
    zsh = "\n".join(protocol("zsh", "kompose db db:import ", root.parent))
    assert "shop_20250101_000000.sql" in zsh and "notes.txt" not in zsh
    assert "db\\\\:export" in "\n".join(protocol("zsh", "kompose web db:", root.parent))


def test_completion_reads_names_only(root: Path) -> None:
    """No psycopg, no command layer, no hooks or .env parsing on a TAB."""
    env = {**os.environ, "_KOMPOSE_COMPLETE": "complete_fish",
           "_TYPER_COMPLETE_ARGS": "kompose web ", "_TYPER_COMPLETE_FISH_ACTION": "get-args"}
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "kompose_py"],
                          cwd=root.parent, env=env, capture_output=True, text=True, check=True)
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines()}
    assert "kompose_py.cli.completion" in imported  # the measurement sees our modules
    for heavy in ("psycopg", "kompose_py.cli.commands", "kompose_py.hooks", "kompose_py.envfiles",
                  "dotenv", "kompose_py.database"):
        assert heavy not in imported, heavy


@pytest.mark.parametrize("args", [("--version",), ("--help",)])
def test_version_and_help_do_not_import_the_command_layer(args: tuple[str, ...]) -> None:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "kompose_py", *args],
                          capture_output=True, text=True, check=True)
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines()}
    assert "kompose_py.cli.app" in imported
    assert "kompose_py.cli.commands" not in imported and "psycopg" not in imported


def test_show_completion_for_each_shell() -> None:
    """The shell named after --show-completion is the one whose script comes out, whatever
    shell kompose runs under (Typer's detection alone ignored the name: a bash user asking
    for zsh got bash's script)."""
    for shell, marker in (("bash", "complete -o"), ("zsh", "compdef"),
                          ("fish", "complete --command kompose")):
        r = run_kompose("--show-completion", shell)
        assert r.code == 0 and marker in r.out, (shell, r.all)
        r = run_kompose("--root", "/nonexistent", "--show-completion", shell)
        assert r.code == 0 and marker in r.out, (shell, r.all)
    r = run_kompose("--show-completion", "tcsh")
    assert r.code == 2 and "unsupported shell 'tcsh'" in r.err and r.out == ""


def test_install_completion_for_the_named_shell(tmp_path: Path) -> None:
    r = run_kompose("--install-completion", "fish", env={"HOME": str(tmp_path)})
    assert r.code == 0, r.all
    script = tmp_path / ".config" / "fish" / "completions" / "kompose.fish"
    assert "complete --command kompose" in script.read_text()
    assert not (tmp_path / ".bashrc").exists() and not (tmp_path / ".zshrc").exists()


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """Two swarm stacks (each .env says so, in two spellings) and a Compose one."""
    return make_stacks(tmp_path / "mixed", {
        "a": {"compose.yaml": COMPOSE, ".env": "X=1\nKOMPOSE_ORCHESTRATOR=swarm\n"},
        "b": {"compose.yaml": COMPOSE,
              ".env": "KOMPOSE_ORCHESTRATOR=compose\nexport KOMPOSE_ORCHESTRATOR='Swarm' # here\n"},
        "c": {"compose.yaml": COMPOSE},
    })


def commands_for(mixed: Path, line: str, env: dict[str, str] | None = None) -> set[str]:
    words = [w.split("\t")[0] for w in protocol("fish", line, mixed.parent, env)]
    # kompose's own commands aside (and the rest of a help text that fish got on two lines)
    return {w for w in words if w and ":" not in w and " " not in w}


SWARM_VERBS = {"up", "down", "ps", "logs", "restart", "config", "exec", "scale", "top"}


def test_swarm_stacks_are_offered_only_what_swarm_runs(mixed: Path) -> None:
    """After a pattern whose stacks all run on Swarm, COMMAND offers a swarm stack's verbs
    (and kompose's commands); one Compose stack in the selection brings back Compose's."""
    root = f"--root={mixed}"
    assert commands_for(mixed, f"kompose {root} a ") == SWARM_VERBS
    assert commands_for(mixed, f"kompose {root} a,b ") == SWARM_VERBS
    assert commands_for(mixed, f"kompose {root} a st") == set()  # no start, stop on Swarm
    assert "hooks:list" in {w.split("\t")[0] for w in
                            protocol("fish", f"kompose {root} a ", mixed.parent)}
    everything = commands_for(mixed, f"kompose {root} '*' ")
    assert {"build", "start", "top"} <= everything
    # -e on the command line wins; then the root .env, over the stack's.
    assert "build" in commands_for(mixed, f"kompose {root} -e KOMPOSE_ORCHESTRATOR=compose a ")
    assert commands_for(mixed, f"kompose {root} -e KOMPOSE_ORCHESTRATOR=swarm c ") == SWARM_VERBS
    (mixed / ".env").write_text("KOMPOSE_ORCHESTRATOR=compose\n")
    assert "build" in commands_for(mixed, f"kompose {root} a ")
    (mixed / ".env").write_text("KOMPOSE_ORCHESTRATOR=swarm\n")
    assert commands_for(mixed, f"kompose {root} c ") == SWARM_VERBS
    # A value only the .env reader could work out: offer everything.
    (mixed / ".env").write_text("KOMPOSE_ORCHESTRATOR=${WHERE}\n")
    assert "build" in commands_for(mixed, f"kompose {root} a ")
    assert bash_complete(mixed, ["kompose", "--root", str(mixed), "c", "do"]) == ["down"]
    (mixed / ".env").unlink()
    assert bash_complete(mixed, ["kompose", "--root", str(mixed), "a", "b"]) == []


def test_completion_for_swarm_stacks_stays_light(mixed: Path) -> None:
    """Reading KOMPOSE_ORCHESTRATOR costs a regular expression over two small files: neither
    the .env reader nor the Swarm backend is imported."""
    env = {**os.environ, "_KOMPOSE_COMPLETE": "complete_fish",
           "_TYPER_COMPLETE_ARGS": f"kompose --root={mixed} a ",
           "_TYPER_COMPLETE_FISH_ACTION": "get-args"}
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "kompose_py"],
                          cwd=mixed.parent, env=env, capture_output=True, text=True, check=True)
    assert "scale" in proc.stdout.split()
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines()}
    assert "kompose_py.backends.swarmargs" in imported
    for heavy in ("psycopg", "kompose_py.envfiles", "kompose_py.backends.swarm",
                  "kompose_py.backends.swarmengine", "kompose_py.runner.run",
                  "kompose_py.cli.dispatch", "kompose_py.lifecycle"):
        assert heavy not in imported, heavy
