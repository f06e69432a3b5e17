"""Stacks on several Docker engines: a stack whose .env sets DOCKER_HOST runs
on that engine; kompose needs nothing more."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

from tests.conftest import SERVICE, make_stacks, run_kompose


def names_on(host: str | None, project: str) -> list[str]:
    cmd = ["docker"] + (["-H", host] if host else []) + [
        "ps", "-a", "--filter", f"label=com.docker.compose.project={project}",
        "--format", "{{.Names}}"]
    return sorted(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split())


def test_stacks_on_two_engines(tmp_path: Path, second_engine: str) -> None:
    a, b = f"kt-a-{uuid.uuid4().hex[:6]}", f"kt-b-{uuid.uuid4().hex[:6]}"
    root = make_stacks(tmp_path / "root", {
        "a": {"compose.yaml": SERVICE, ".env": f"COMPOSE_PROJECT_NAME={a}\n"},
        "b": {"compose.yaml": SERVICE,
              ".env": f"COMPOSE_PROJECT_NAME={b}\nDOCKER_HOST={second_engine}\n",
              # Only this project: other suites share the second engine at the same time.
              "hooks.sh": 'hook_post_up() { docker ps --filter '
                          '"label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" '
                          '--format "{{.Names}}" >"$HOOK_OUT"; }\n'},
    })
    # Someone else's container on the same engine: the hook's view must not count it.
    foreign = f"kt-foreign-{uuid.uuid4().hex[:6]}"
    subprocess.run(["docker", "-H", second_engine, "run", "-d", "--init", "--name", foreign,
                    "busybox:latest", "sleep", "600"], check=True, capture_output=True)
    try:
        r = run_kompose("--root", str(root), "-j", "2", "*", "up", "-d",
                        env={"HOOK_OUT": str(tmp_path / "seen-by-hook")}, timeout=300)
        assert r.code == 0, r.err
        assert names_on(None, a) == [f"{a}-app-1"]
        assert names_on(None, b) == []
        assert names_on(second_engine, b) == [f"{b}-app-1"]
        assert names_on(second_engine, a) == []
        # The stack's hooks talk to the stack's engine too.
        assert (tmp_path / "seen-by-hook").read_text().split() == [f"{b}-app-1"]
        r = run_kompose("--root", str(root), "*", "down", "-t", "1", timeout=300)
        assert r.code == 0, r.err
        assert names_on(None, a) == [] and names_on(second_engine, b) == []
    finally:
        subprocess.run(["docker", "compose", "-p", a, "down", "-t", "1"], capture_output=True)
        subprocess.run(["docker", "-H", second_engine, "compose", "-p", b, "down", "-t", "1"],
                       capture_output=True)
        subprocess.run(["docker", "-H", second_engine, "rm", "-f", foreign], capture_output=True)


def test_stack_on_a_docker_context(tmp_path: Path, second_engine: str) -> None:
    """DOCKER_CONTEXT works the same way: Docker's own context, nothing in kompose."""
    context = f"kt-ctx-{uuid.uuid4().hex[:6]}"
    project = f"kt-c-{uuid.uuid4().hex[:6]}"
    subprocess.run(["docker", "context", "create", context, "--docker", f"host={second_engine}"],
                   check=True, capture_output=True)
    root = make_stacks(tmp_path / "root", {"c": {
        "compose.yaml": SERVICE,
        ".env": f"COMPOSE_PROJECT_NAME={project}\nDOCKER_CONTEXT={context}\n"}})
    try:
        r = run_kompose("--root", str(root), "c", "up", "-d", timeout=300)
        assert r.code == 0, r.err
        assert names_on(second_engine, project) == [f"{project}-app-1"]
        assert names_on(None, project) == []
        assert run_kompose("--root", str(root), "c", "down", "-t", "1", timeout=300).code == 0
        assert names_on(second_engine, project) == []
    finally:
        subprocess.run(["docker", "-H", second_engine, "compose", "-p", project, "down", "-t",
                        "1"], capture_output=True)
        subprocess.run(["docker", "context", "rm", "-f", context], capture_output=True)
