"""``kompose --status`` end to end on the real engine: a health check, a stopped service, a
published port, a profile, an unreachable engine, the total line, exit codes and --json."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from kompose_py.backends.compose import parse_ps
from tests.conftest import dump_text, make_stacks, run_kompose
from tests.test_json_reports import readme_schema, same_shape

WEB = """services:
  web:
    image: busybox:latest
    pull_policy: never
    init: true
    command: ["httpd", "-f", "-p", "80"]
    ports: ["127.0.0.1:0:80"]
    healthcheck: {test: ["CMD", "true"], interval: 1s, retries: 30}
  idle:
    image: busybox:latest
    pull_policy: never
    init: true
    command: ["sleep", "3600"]
  extra:
    image: busybox:latest
    profiles: [extra]
"""
SICK = """services:
  sick:
    image: busybox:latest
    pull_policy: never
    init: true
    command: ["sleep", "3600"]
    healthcheck: {test: ["CMD", "false"], interval: 1s, retries: 1}
"""
FINE = """services:
  a:
    image: busybox:latest
    pull_policy: never
    init: true
    command: ["sleep", "3600"]
"""


def compose(stack: Path, *args: str) -> None:
    subprocess.run(["docker", "compose", *args], cwd=stack, check=True, capture_output=True)


@pytest.mark.docker
def test_status_of_real_stacks(docker_engine: None, tmp_path: Path,
                               project_name: Callable[[str], str]) -> None:
    names = {s: project_name(s) for s in ("web", "sick", "fine")}
    root = make_stacks(tmp_path / "root", {
        "web": {"compose.yaml": WEB, ".env": f"COMPOSE_PROJECT_NAME={names['web']}\n"},
        "sick": {"compose.yaml": SICK, ".env": f"COMPOSE_PROJECT_NAME={names['sick']}\n"},
        "fine": {"compose.yaml": FINE, "shop_20250101_000000.sql": dump_text("-- dump\n"),
                 ".env": f"COMPOSE_PROJECT_NAME={names['fine']}\nDB_NAME=shop\n"},
        "far": {"compose.yaml": FINE,
                ".env": "DOCKER_HOST=unix:///nonexistent/docker.sock\n"},
    })
    compose(root / "web", "up", "-d", "--wait")
    compose(root / "web", "stop", "-t", "1", "idle")
    compose(root / "sick", "up", "-d")
    compose(root / "fine", "up", "-d")
    port = subprocess.run(["docker", "compose", "port", "web", "80"], cwd=root / "web",
                          check=True, capture_output=True, text=True).stdout.strip()
    published = port.rsplit(":", 1)[1]
    for _ in range(60):  # the failing health check needs a moment to say "unhealthy"
        doc = json.loads(run_kompose("--root", str(root), "--status", "--json", "sick").out)
        if doc["stacks"][0]["health"]["unhealthy"]:
            break
        time.sleep(0.5)

    r = run_kompose("--root", str(root), "--status", env={"NO_COLOR": "1"})
    assert r.code == 1, r.err
    lines = {line.split()[0]: line for line in r.out.splitlines()}
    assert "ENGINE" in lines["STACK"]  # shown because one stack is elsewhere
    assert " 1/2 " in lines["web"] and "1 healthy" in lines["web"]
    assert f"127.0.0.1:{published}->80/tcp" in lines["web"]
    assert " 1/1 " in lines["sick"] and "1 unhealthy" in lines["sick"]
    assert " 1/1 " in lines["fine"] and "ago" in lines["fine"]
    assert "DOCKER_HOST=unix:///nonexistent/docker.sock" in lines["far"]
    assert "error:" in lines["far"]
    assert lines["Total:"].startswith("Total: 3/4 services running in 4 stacks; 1 healthy, "
                                      "1 unhealthy; 1/4 stacks ok")

    doc = json.loads(run_kompose("--root", str(root), "--status", "--json").out)
    same_shape(doc, readme_schema("--status"))
    by = {s["stack"]: s for s in doc["stacks"]}
    assert doc["ok"] is False and doc["total"]["running"] == 3 and doc["total"]["expected"] == 4
    assert sorted(by["web"]["expected"]) == ["idle", "web"] and by["web"]["running"] == ["web"]
    assert {c["service"]: c["state"] for c in by["web"]["containers"]} == {
        "web": "running", "idle": "exited"}
    assert by["web"]["ports"] == [f"127.0.0.1:{published}->80/tcp"]
    assert by["fine"]["ok"] is True and by["fine"]["database"] == "shop"
    assert by["fine"]["newest_dump"]["file"] == str(root / "fine" / "shop_20250101_000000.sql")
    assert by["far"]["error"] and by["far"]["engine"].startswith("DOCKER_HOST=")

    assert run_kompose("--root", str(root), "-s", "fine").code == 0
    # COMPOSE_PROFILES in the stack's environment: the profiled service becomes expected.
    r = run_kompose("--root", str(root), "-e", "COMPOSE_PROFILES=extra", "-s", "--json", "web")
    assert sorted(json.loads(r.out)["stacks"][0]["expected"]) == ["extra", "idle", "web"]


def test_ps_json_lines_and_array_forms() -> None:
    line = ('{"Service":"web","Name":"p-web-1","State":"running","Health":"healthy",'
            '"Publishers":[{"URL":"0.0.0.0","TargetPort":80,"PublishedPort":8080,"Protocol":'
            '"tcp"},{"URL":"::","TargetPort":80,"PublishedPort":8080,"Protocol":"tcp"},'
            '{"URL":"","TargetPort":53,"PublishedPort":0,"Protocol":"udp"}]}')
    for text in (line + "\n", f"[{line}]"):
        (state,) = parse_ps(text)
        assert (state.service, state.state, state.health) == ("web", "running", "healthy")
        assert state.ports == ("8080->80/tcp",)
    assert parse_ps("") == []
