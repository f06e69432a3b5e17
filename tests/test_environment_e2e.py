"""A stack runs exactly as ``docker compose`` in its folder with kompose.sh's shell would run
it: the root .env's secrets beat the stack's placeholders for compose, hooks and env:show
alike; the shell beats the stack .env; Compose picks the files (override, COMPOSE_FILE,
COMPOSE_PROFILES). Against the real engine."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import COMPOSE, SERVICE, Shim, make_stacks, project_containers, run_kompose

# /usr/bin/env, not python3: a pyenv shim would add to PATH before Python could print it.
DUMP_ENV = 'hook_pre_config() { env -0 > "$HOOK_OUT"; }\n'


def hook_env(path: Path) -> dict[str, str]:
    pairs = (item.split("=", 1) for item in path.read_text().split("\0") if "=" in item)
    return {k: v for k, v in pairs}
APP = """services:
  app:
    image: busybox:latest
    environment:
      JWT_TOKEN: ${JWT_TOKEN}
      ADMIN_PASSWORD: ${ADMIN_PASSWORD}
      URL: ${URL}
      FROM_SHELL: ${FROM_SHELL:-unset}
"""


@pytest.fixture
def secrets_tree(tmp_path: Path) -> Path:
    """A root with the real secrets and a stack .env with placeholders, as real roots have."""
    return make_stacks(tmp_path / "root", {
        ".env": "JWT_TOKEN=real-jwt-token-4711\nADMIN_PASSWORD=root-admin-pw-0815\n"
                "SHARED_HOST=db.internal\n",
        "vault": {"compose.yaml": APP, "hooks.sh": DUMP_ENV,
                  ".env": "COMPOSE_PROJECT_NAME=kt-vault\nJWT_TOKEN=changeme\n"
                          "ADMIN_PASSWORD=admin\nURL=http://${SHARED_HOST}/api\n"
                          "FROM_SHELL=stack\n"},
    })


def compose_env(out: str) -> dict[str, str]:
    config = json.loads(out)
    env: dict[str, str] = config["services"]["app"]["environment"]
    return env


def test_root_secret_beats_stack_placeholder_everywhere(
        secrets_tree: Path, tmp_path: Path, docker_engine: None) -> None:
    hook_out = tmp_path / "hook-env.json"
    r = run_kompose("--root", str(secrets_tree), "vault", "config", "--format", "json",
                    env={"HOOK_OUT": str(hook_out), "FROM_SHELL": "shell"})
    assert r.code == 0, r.err
    seen_by_compose = compose_env(r.out)
    seen_by_hook = hook_env(hook_out)
    assert seen_by_compose["JWT_TOKEN"] == seen_by_hook["JWT_TOKEN"] == "real-jwt-token-4711"
    assert seen_by_compose["ADMIN_PASSWORD"] == seen_by_hook["ADMIN_PASSWORD"] \
        == "root-admin-pw-0815"
    assert seen_by_compose["URL"] == seen_by_hook["URL"] == "http://db.internal/api"
    # The environment kompose was started with beats the stack .env as well (Compose's rule).
    assert seen_by_compose["FROM_SHELL"] == seen_by_hook["FROM_SHELL"] == "shell"
    for secret in ("real-jwt-token-4711", "root-admin-pw-0815"):
        assert secret not in r.err  # compose printed them on stdout; kompose never does

    r = run_kompose("--root", str(secrets_tree), "--json", "vault", "env:show")
    assert r.code == 0, r.err
    variables = {v["key"]: v for v in json.loads(r.out)["stacks"][0]["variables"]}
    assert variables["JWT_TOKEN"] == {"key": "JWT_TOKEN", "value": "***",
                                      "source": "root .env", "replaces_stack_value": True}
    assert variables["URL"]["value"] == "http://db.internal/api"
    assert variables["URL"]["source"] == "stack .env"
    assert "real-jwt-token" not in r.out + r.err and "root-admin-pw" not in r.out + r.err


def test_hooks_see_exactly_what_compose_sees(secrets_tree: Path, tmp_path: Path,
                                             docker_engine: None) -> None:
    """``docker compose config --environment`` prints the environment Compose interpolates
    with; every variable of the stack has the same value there and in the hook."""
    hook_out = tmp_path / "hook-env.json"
    r = run_kompose("--root", str(secrets_tree), "vault", "config", "--environment",
                    env={"HOOK_OUT": str(hook_out), "FROM_SHELL": "shell"})
    assert r.code == 0, r.err
    compose: dict[str, str] = {}
    for line in r.out.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            compose[key] = value
    hook = hook_env(hook_out)
    stack_keys = ("JWT_TOKEN", "ADMIN_PASSWORD", "URL", "SHARED_HOST", "FROM_SHELL",
                  "COMPOSE_PROJECT_NAME", "PATH", "HOME")
    assert {k: compose[k] for k in stack_keys} == {k: hook[k] for k in stack_keys}
    differing = {k for k in compose if k in hook and compose[k] != hook[k]}
    assert differing <= {"PWD", "SHLVL", "_"}, differing  # bash's own, not the stack's


def test_inherited_variable_beats_stack_env(tmp_path: Path, shim: Shim) -> None:
    root = make_stacks(tmp_path / "r", {"s": {"compose.yaml": COMPOSE,
                                              ".env": "TAG=from-stack\nOTHER=stack\n"}})
    r = run_kompose("--root", str(root), "s", "up", "-d", env={**shim.env(), "TAG": "shell"})
    assert r.code == 0, r.err
    env = shim.calls()[0]["env"]
    assert (env["TAG"], env["OTHER"]) == ("shell", "stack")


def test_shadowed_keys_are_named_never_their_values(secrets_tree: Path, shim: Shim) -> None:
    r = run_kompose("--root", str(secrets_tree), "-n", "vault", "up", "-d", env=shim.env())
    assert r.code == 0, r.err
    assert ("shadowed: ADMIN_PASSWORD (stack .env value replaced by root .env), JWT_TOKEN "
            "(stack .env value replaced by root .env)") in r.err
    for value in ("changeme", "admin\n", "real-jwt-token", "root-admin-pw"):
        assert value not in r.err
    r = run_kompose("--root", str(secrets_tree), "-v", "vault", "ps", env=shim.env())
    assert "shadowed: ADMIN_PASSWORD" in r.err
    r = run_kompose("--root", str(secrets_tree), "vault", "ps", env=shim.env())
    assert "shadowed" not in r.err  # only with --verbose or --dry-run

    r = run_kompose("--root", str(secrets_tree), "vault", "env:check")
    assert r.code == 0, r.out + r.err  # warnings only
    assert "warning: JWT_TOKEN (stack .env value replaced by root .env)" in r.out
    assert "1 stack checked: 0 errors, 2 warnings" in r.out
    r = run_kompose("--root", str(secrets_tree), "--json", "vault", "env:check")
    doc = json.loads(r.out)
    assert doc["stacks"][0]["errors"] == [] and len(doc["stacks"][0]["warnings"]) == 2


def test_env_check_errors(tmp_path: Path) -> None:
    root = make_stacks(tmp_path / "r", {
        "a": {"compose.yaml": COMPOSE, ".env": "COMPOSE_FILE=compose.yaml:missing.yaml\n"},
        "b": {"compose.yaml": COMPOSE, ".env": "X=${REQUIRED:?set REQUIRED in the root}\n"},
        "c": {"compose.yaml": COMPOSE},
        "d": {"compose.yaml": COMPOSE},
        "e": {"compose.yaml": COMPOSE, ".env": "COMPOSE_FILE=\nCOMPOSE_PROJECT_NAME=e\n"},
    })
    r = run_kompose("--root", str(root), "*", "env:check", env={"COMPOSE_PROJECT_NAME": "same"})
    assert r.code == 1
    assert "error: compose file a/missing.yaml (from COMPOSE_FILE) does not exist" in r.out
    assert (f"error: {root}/b/.env:1: X: required variable REQUIRED is missing a value: "
            "set REQUIRED in the root") in r.out
    # e's own name is beaten by the shell's, so e shares it as well (and is warned twice)
    assert "compose project name 'same' is also c, d, e's" in r.out
    assert "COMPOSE_PROJECT_NAME (stack .env value replaced by environment)" in r.out
    assert "error: COMPOSE_FILE has an empty entry (stack .env)" in r.out
    assert "5 stacks checked: 3 errors" in r.out


def test_nothing_in_any_env_file_is_executed(tmp_path: Path, shim: Shim) -> None:
    marker = tmp_path / "executed"
    root = make_stacks(tmp_path / "r", {
        ".env": f"R1=$(touch {marker})\nR2=`touch {marker}`\n",
        "s": {"compose.yaml": COMPOSE,
              ".env": f'S1="$(touch {marker})"\nS2=${{UNSET:-`touch {marker}`}}\n'},
    })
    for args in (["-n", "s", "up"], ["s", "up"], ["s", "env:show"], ["s", "env:check"]):
        r = run_kompose("--root", str(root), *args, env=shim.env())
        assert r.code == 0, r.err
    assert not marker.exists()
    env = shim.calls()[0]["env"]
    assert env["S2"] == f"`touch {marker}`" and env["R1"] == f"$(touch {marker})"


def test_new_secret_looking_keys_are_masked(tmp_path: Path, shim: Shim) -> None:
    root = make_stacks(tmp_path / "r", {"s": {"compose.yaml": COMPOSE, ".env": (
        "SMTP_PASS=smtp-value-1\nGOTIFY_DEFAULTUSER_PASS=gotify-value-2\nPASSWD=passwd-value-3\n"
        "ADMIN_HASH=hash-value-4\nSSH_PRIVATE=private-value-5\n"
        "DSN=smtp://user:smtp-value-1@mail\n")}})
    r = run_kompose("--root", str(root), "-n", "-e", "MY_PASS=cli-pass-6", "s", "up",
                    "--password=x", env=shim.env())
    r2 = run_kompose("--root", str(root), "s", "env:show")
    assert r.code == r2.code == 0
    for n, value in enumerate(("smtp-value", "gotify-value", "passwd-value", "hash-value",
                               "private-value", "cli-pass"), 1):
        assert f"{value}-{n}" not in r.err + r.out + r2.out
    assert "smtp://user:***@mail" in r2.out  # a secret inside another value is masked too


def labels(project: str) -> dict[str, Any]:
    out = subprocess.run(["docker", "inspect", f"{project}-app-1", "--format",
                          "{{json .Config.Labels}}"], capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def test_compose_chooses_the_files(tmp_path: Path, docker_engine: None,
                                   project_name: Any) -> None:
    """The override file is merged, COMPOSE_FILE from a stack .env is honoured, and so is
    COMPOSE_PROFILES; dry-run shows the files; Compose's own label says what it used."""
    p_over, p_file, p_prof = project_name("over"), project_name("file"), project_name("prof")
    extra = "services:\n  app:\n    labels:\n      kt.extra: from-extra\n"
    root = make_stacks(tmp_path / "r", {
        "over": {"compose.yaml": SERVICE, ".env": f"COMPOSE_PROJECT_NAME={p_over}\n",
                 "compose.override.yaml": extra.replace("from-extra", "from-override")},
        "file": {"compose.yaml": SERVICE, "extra.yaml": extra,
                 "compose.override.yaml": "this file is not used: not even valid yaml: [",
                 ".env": f"COMPOSE_PROJECT_NAME={p_file}\nCOMPOSE_FILE=compose.yaml:extra.yaml\n"},
        "prof": {"compose.yaml": SERVICE + "  side:\n    image: busybox:latest\n"
                 "    init: true\n    profiles: [extra]\n"
                 "    command: [\"sh\", \"-c\", \"while :; do sleep 3600; done\"]\n",
                 ".env": f"COMPOSE_PROJECT_NAME={p_prof}\nCOMPOSE_PROFILES=extra\n"},
    })
    r = run_kompose("--root", str(root), "-n", "*", "up", "-d")
    assert r.code == 0, r.err
    listed = {line.split()[0]: line.split()[1]
              for line in run_kompose("--root", str(root), "--list").out.splitlines()[1:-1]}
    assert listed == {"file": "compose.yaml,extra.yaml", "prof": "compose.yaml",
                      "over": "compose.yaml,compose.override.yaml"}
    assert "compose files: compose.yaml, extra.yaml" in r.err
    assert "compose files: compose.yaml, compose.override.yaml" in r.err
    r = run_kompose("--root", str(root), "*", "up", "-d", timeout=300)
    assert r.code == 0, r.err
    over, file = labels(p_over), labels(p_file)
    assert over["kt.extra"] == "from-override"
    assert over["com.docker.compose.project.config_files"] == \
        f"{root}/over/compose.yaml,{root}/over/compose.override.yaml"
    assert file["kt.extra"] == "from-extra"
    assert file["com.docker.compose.project.config_files"] == \
        f"{root}/file/compose.yaml,{root}/file/extra.yaml"
    assert project_containers(p_prof) == [f"{p_prof}-app-1", f"{p_prof}-side-1"]
    r = run_kompose("--root", str(root), "*", "down", "-t", "1", timeout=300)
    assert r.code == 0, r.err
    assert project_containers(p_prof, running_only=False) == []


def test_database_settings_follow_the_same_precedence(tmp_path: Path, pg: Any) -> None:
    """The root's real password beats the stack's placeholder for pg_dump too."""
    name = pg.new_name()
    pg.create(name)
    root = make_stacks(tmp_path / "r", {
        ".env": f"DB_HOST={pg.host}\nDB_PORT={pg.port}\nDB_USER={pg.user}\n"
                f"DB_PASSWORD={pg.password}\n",
        "shop": {"compose.yaml": COMPOSE,
                 ".env": f"DB_NAME={name}\nDB_HOST=placeholder.invalid\nDB_PASSWORD=changeme\n"},
    })
    r = run_kompose("--root", str(root), "shop", "db:export", timeout=120)
    assert r.code == 0, r.err
    assert len(list((root / "shop").glob(f"{name}_*.sql"))) == 1
    assert pg.password not in r.out + r.err


def test_variables_that_change_bash_never_reach_hooks(tmp_path: Path) -> None:
    out = tmp_path / "hook.txt"
    compose_env = tmp_path / "compose.env"
    # A "compose" that only records its environment, in dash (which ignores all of these).
    compose = f"/bin/sh -c 'env > {compose_env}' compose"
    evil = tmp_path / "evil-ran"
    root = make_stacks(tmp_path / "r", {"s": {
        "compose.yaml": COMPOSE,
        ".env": f"SHELLOPTS=xtrace\nBASH_ENV={tmp_path}/evil.sh\nIFS=x\nPS4=TRACED \n",
        "hooks.sh": f'hook_pre_up() {{ echo "plain words flags=$-" > {out}; }}\n'}})
    # Any bash that reads BASH_ENV records whether it is a hook (KOMPOSE_HOOK is set there).
    (tmp_path / "evil.sh").write_text(f'echo "hook=${{KOMPOSE_HOOK:-}}" >> {evil}\n')
    # An exported bash function can only come from the environment (a .env key has no %).
    r = run_kompose("--root", str(root), "s", "up",
                    env={"KOMPOSE_COMPOSE_CMD": compose,
                         "BASH_FUNC_echo%%": "() {  builtin echo hijacked; }"})
    assert r.code == 0, r.err
    words, flags = out.read_text().split("flags=")
    assert words == "plain words " and "x" not in flags  # no IFS, no echo function, no xtrace
    hooks_that_read_it = [line for line in (evil.read_text().splitlines() if evil.exists()
                                            else []) if line != "hook="]
    assert hooks_that_read_it == []
    assert "SHELLOPTS=xtrace" in compose_env.read_text().splitlines()  # compose still does


def test_secrets_inside_overrides_and_quoted_arguments_are_masked(tmp_path: Path,
                                                                  shim: Shim) -> None:
    root = make_stacks(tmp_path / "r", {
        ".env": "ADMIN_PASSWORD=rootAdminPw456\nDB_PASSWORD=\"my pass'word9\"\n",
        "s": {"compose.yaml": COMPOSE}})
    for extra in ([], ["-n"]):
        r = run_kompose("--root", str(root), *extra, "-e", "DSN=postgres://u:rootAdminPw456@h",
                        "-e", "SMTP_PASS=ovrPw777", "-e", "NOTE=see ovrPw777", "s", "run", "app",
                        "echo", "my pass'word9", env=shim.env())
        assert r.code == 0, r.err
        for secret in ("rootAdminPw456", "ovrPw777", "word9"):
            assert secret not in r.err, r.err
        assert "overrides: DSN=postgres://u:***@h SMTP_PASS=*** NOTE=see ***" in r.err


def test_env_check_knows_compose_s_project_folder(tmp_path: Path) -> None:
    """COMPOSE_FILE=docker/compose.yml makes docker/ Compose's project folder: its name is
    the project name (two stacks collide) and Compose reads docker/.env as well."""
    sub = {"docker": {"compose.yml": COMPOSE, ".env": "FOO=fromsub\n"},
           "compose.yaml": COMPOSE, ".env": "COMPOSE_FILE=docker/compose.yml\n"}
    root = make_stacks(tmp_path / "r", {
        "blog": sub, "shop": sub,
        "gaps": {"compose.yaml": COMPOSE, "extra.yaml": COMPOSE,
                 ".env": "COMPOSE_FILE=compose.yaml::extra.yaml\n"}})
    r = run_kompose("--root", str(root), "*", "env:check")
    assert r.code == 1
    assert "compose project name 'docker' is also shop's" in r.out
    assert "Compose also reads blog/docker/.env (the first compose file's folder)" in r.out
    assert "error: COMPOSE_FILE has an empty entry (stack .env)" in r.out


@pytest.mark.parametrize("kind", ["fifo", "folder", "dangling link"])
def test_a_hooks_file_that_is_no_file_stops_the_run_before_it_starts(
        tmp_path: Path, shim: Shim, kind: str) -> None:
    root = make_stacks(tmp_path / "r", {"a": {"compose.yaml": COMPOSE},
                                        "b": {"compose.yaml": COMPOSE}})
    target = root / "b" / "hooks.sh"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "folder":
        target.mkdir()
    else:
        target.symlink_to(tmp_path / "gone.sh")
    for args in (["*", "up", "-d"], ["-n", "*", "up"], ["*", "hooks:list"], ["--list"]):
        r = run_kompose("--root", str(root), *args, env=shim.env(), timeout=30)  # no hang
        assert "Traceback" not in r.err
        if args != ["--list"]:
            assert r.code == 2, r.err
            assert f"{target}: " in r.err
            assert "usage:" not in r.err  # a configuration error: the synopsis would not help
    assert shim.calls() == []  # stack a did not start either


def test_compose_path_separator_from_the_root_env(tmp_path: Path, docker_engine: None) -> None:
    """COMPOSE_FILE split on COMPOSE_PATH_SEPARATOR, both from the root .env: kompose lists the
    files Compose merges (Compose's own `config --services` is the oracle)."""
    root = make_stacks(tmp_path / "r", {
        ".env": "COMPOSE_PATH_SEPARATOR=;\nCOMPOSE_FILE=compose.yaml;more.yaml\n",
        "s": {"compose.yaml": COMPOSE, "more.yaml": "services:\n  more:\n    image: busybox\n",
              "compose.override.yaml": "services:\n  ignored:\n    image: busybox\n"},
    })
    listed = json.loads(run_kompose("--root", str(root), "--json", "--list").out)
    assert listed["stacks"][0]["compose_files"] == [str(root / "s" / "compose.yaml"),
                                                    str(root / "s" / "more.yaml")]
    r = run_kompose("--root", str(root), "s", "config", "--services")
    assert r.code == 0, r.err
    assert sorted(r.out.split()) == ["app", "more"]
