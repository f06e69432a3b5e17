"""The stack-file renderer: its table (unit tests), and the table's claims about the real
`docker stack deploy` on a real 3-node swarm (tests marked docker)."""

from __future__ import annotations

import copy
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from kompose_py.backends import swarmrender as sr
from kompose_py.backends.swarmstate import decide_all, overall

if TYPE_CHECKING:
    from tests.swarmfixture import SwarmCluster


BASE = {"image": "busybox:latest", "command": ["sleep", "1000"]}

# One sample value per Compose service key, as `docker compose config --format json` writes it.
# fmt: off
SAMPLES: dict[str, Any] = {
    "annotations": {"a": "b"}, "attach": False, "blkio_config": {"weight": 300},
    "build": {"context": "."}, "cap_add": ["NET_ADMIN"], "cap_drop": ["CHOWN"], "cgroup": "host",
    "cgroup_parent": "/x", "container_name": "cn", "cpu_count": 1, "cpu_percent": 50,
    "cpu_shares": 512, "cpu_quota": 50000, "cpu_period": 100000, "cpu_rt_period": 1000,
    "cpu_rt_runtime": 100, "cpus": 0.5, "cpuset": "0",
    "depends_on": {"t": {"condition": "service_started", "required": True}},
    "device_cgroup_rules": ["c 1:3 mr"], "devices": ["/dev/null:/dev/xnull"],
    "dns": ["192.0.2.53"], "dns_opt": ["use-vc"], "dns_search": ["example.com"],
    "domainname": "ex.com", "entrypoint": ["sh", "-c"], "environment": {"A": "1"},
    "expose": ["80"], "external_links": ["x:y"], "extra_hosts": ["h=192.0.2.4"], "gpus": "all",
    "group_add": ["audio"], "healthcheck": {"test": ["CMD", "true"], "interval": "2s"},
    "hostname": "hh", "init": True, "ipc": "host", "labels": {"l": "v"}, "links": ["t"],
    "logging": {"driver": "json-file", "options": {"max-size": "1m"}},
    "mac_address": "02:42:ac:11:00:02", "mem_limit": "67108864", "mem_reservation": "33554432",
    "mem_swappiness": 10, "memswap_limit": "134217728", "network_mode": "host",
    "oom_kill_disable": True, "oom_score_adj": 100, "pid": "host", "pids_limit": 100,
    "platform": "linux/amd64", "post_start": [{"command": ["true"]}],
    "pre_stop": [{"command": ["true"]}], "privileged": True, "pull_policy": "never",
    "read_only": True, "restart": "no", "runtime": "runc", "scale": 2,
    "security_opt": ["no-new-privileges:true"], "shm_size": "67108864", "stdin_open": True,
    "stop_grace_period": "3s", "stop_signal": "SIGINT", "storage_opt": {"size": "1G"},
    "sysctls": {"net.core.somaxconn": "1024"}, "tmpfs": ["/run"], "tty": True,
    "ulimits": {"nofile": {"soft": 100, "hard": 200}}, "user": "1000", "userns_mode": "host",
    "uts": "host", "volumes_from": ["t"], "working_dir": "/tmp", "label_file": ["l.txt"],
    "use_api_socket": True, "develop": {"watch": [{"path": ".", "action": "rebuild"}]},
    "models": ["m"], "provider": {"type": "x"}, "profiles": ["p"],
}
# fmt: on
# Keys whose honouring the spec comparison below cannot see (Windows-only, or no visible field).
NOT_VISIBLE = {
    "isolation",
    "credential_spec",
    "secrets",
    "configs",
    "image",
    "command",
    "ports",
    "volumes",
    "networks",
    "deploy",
}


def one(key: str, value: Any, **kw: Any) -> sr.Rendered:
    return sr.render({"services": {"s": {**BASE, key: value}}}, "p", **kw)


def actions(r: sr.Rendered) -> set[tuple[str, str, str]]:
    return {(f.service, f.key, f.action) for f in r.findings}


# ---------------------------------------------------------------- the table, offline


@pytest.mark.parametrize("key", sorted(sr.DROP))
def test_drop_keys_are_removed_with_a_warning(key: str) -> None:
    r = one(key, SAMPLES[key])
    assert key not in r.file["services"]["s"]
    assert ("s", key, "drop") in actions(r)
    assert not r.refused


@pytest.mark.parametrize("key", sorted(sr.REFUSE))
def test_refuse_keys_are_refused(key: str) -> None:
    r = one(key, SAMPLES[key])
    assert [(f.service, f.key) for f in r.refused] == [("s", key)]
    assert r.refused[0].line().startswith(f"service s: {key}: refused on swarm: ")


def test_every_sampled_key_has_exactly_one_row() -> None:
    rows = [sr.PASS_THROUGH, set(sr.DROP), set(sr.REFUSE), sr.MAPPED]
    for key in SAMPLES:
        assert sum(key in row for row in rows) == 1, key


def test_unknown_keys_are_refused_not_dropped() -> None:
    r = one("brand_new_key", 1)
    assert ("s", "brand_new_key", "refuse") in actions(r)


def test_top_level_name_is_the_stack_name() -> None:
    r = sr.render({"name": "shop", "services": {"s": BASE}}, "folder")
    assert r.stack == "shop" and "name" not in r.file
    assert ("", "name", "map") in actions(r)
    assert sr.render({"services": {"s": BASE}}, "folder").stack == "folder"


@pytest.mark.parametrize(
    ("value", "policy"),
    [
        ("no", {"condition": "none"}),
        ("always", {"condition": "any"}),
        ("unless-stopped", {"condition": "any"}),
        ("on-failure", {"condition": "on-failure"}),
        ("on-failure:3", {"condition": "on-failure", "max_attempts": 3}),
    ],
)
def test_restart_maps_to_restart_policy(value: str, policy: dict[str, Any]) -> None:
    r = one("restart", value)
    assert r.file["services"]["s"]["deploy"]["restart_policy"] == policy
    assert ("s", "restart", "map") in actions(r)


def test_deploy_settings_win_over_their_compose_spelling() -> None:
    svc = {
        **BASE,
        "restart": "no",
        "scale": 3,
        "mem_limit": "1m",
        "deploy": {
            "restart_policy": {"condition": "any"},
            "replicas": 1,
            "resources": {"limits": {"memory": "2m"}},
        },
    }
    r = sr.render({"services": {"s": svc}}, "p")
    d = r.file["services"]["s"]["deploy"]
    assert d == {
        "restart_policy": {"condition": "any"},
        "replicas": 1,
        "resources": {"limits": {"memory": "2m"}},
    }
    assert {
        ("s", "restart", "drop"),
        ("s", "scale", "drop"),
        ("s", "mem_limit", "drop"),
    } <= actions(r)


def test_depends_on_either_form_is_dropped() -> None:
    for value in (["t"], {"t": {"condition": "service_healthy", "required": True}}):
        r = one("depends_on", value)
        assert "depends_on" not in r.file["services"]["s"] and not r.refused


def test_tmpfs_and_shm_size_become_tmpfs_mounts() -> None:
    svc = {**BASE, "tmpfs": ["/run", "/x:size=1m,mode=1777"], "shm_size": "67108864"}
    vols = sr.render({"services": {"s": svc}}, "p").file["services"]["s"]["volumes"]
    assert vols == [
        {"type": "tmpfs", "target": "/run"},
        {"type": "tmpfs", "target": "/x", "tmpfs": {"size": 1 << 20, "mode": 0o1777}},
        {"type": "tmpfs", "target": "/dev/shm", "tmpfs": {"size": 64 << 20}},
    ]
    assert ("s", "tmpfs", "refuse") in actions(one("tmpfs", ["/x:uid=5"]))


def test_ports_published_becomes_an_integer_and_host_ip_is_refused() -> None:
    port = {
        "mode": "host",
        "target": 80,
        "published": "8080",
        "protocol": "tcp",
        "app_protocol": "http",
    }
    r = one("ports", [port])
    assert r.file["services"]["s"]["ports"] == [
        {"mode": "host", "target": 80, "published": 8080, "protocol": "tcp"}
    ]
    assert not r.refused
    r = one("ports", [{**port, "host_ip": "127.0.0.1"}])
    assert [f.key for f in r.refused] == ["ports"]


def test_without_ipvs_services_are_dnsrr_and_ingress_ports_refused() -> None:
    ingress = {"mode": "ingress", "target": 80, "published": "8080", "protocol": "tcp"}
    r = one("ports", [ingress], dnsrr=True)
    assert r.file["services"]["s"]["deploy"]["endpoint_mode"] == "dnsrr"
    assert "ingress routing mesh" in r.refused[0].message
    assert not one("ports", [ingress]).refused


def test_declared_networks_become_attachable_external_ones_untouched() -> None:
    cfg = {
        "services": {"s": BASE},
        "networks": {"a": {"name": "p_a", "ipam": {}}, "e": {"name": "e", "external": True}},
    }
    nets = sr.render(cfg, "p").file["networks"]
    assert nets == {
        "a": {"name": "p_a", "ipam": {}, "attachable": True},
        "e": {"name": "e", "external": True},
    }


def test_network_mode_host_joins_the_host_network_others_refused() -> None:
    r = one("network_mode", "host")
    assert r.file["services"]["s"]["networks"] == {"host": None}
    assert r.file["networks"]["host"] == {"external": True, "name": "host"}
    assert ("s", "network_mode", "refuse") in actions(one("network_mode", "service:t"))


def test_null_command_and_entrypoint_are_left_to_the_image() -> None:
    svc = {"image": "busybox:latest", "command": None, "entrypoint": None}
    assert sr.render({"services": {"s": svc}}, "p").file["services"]["s"] == {
        "image": "busybox:latest"
    }


def test_inline_configs_and_secrets_are_refused() -> None:
    cfg = {
        "services": {"s": BASE},
        "configs": {"c": {"content": "hi"}},
        "secrets": {"k": {"environment": "TOKEN"}},
    }
    assert {f.key for f in sr.render(cfg, "p").refused} == {
        "configs.c.content",
        "secrets.k.environment",
    }


def test_build_only_service_is_refused() -> None:
    r = sr.render({"services": {"s": {"build": {"context": "."}}}}, "p")
    assert ("s", "image", "refuse") in actions(r)


def test_extra_hosts_use_the_colon_form() -> None:
    assert one("extra_hosts", ["h=192.0.2.4", "v6=::1"]).file["services"]["s"]["extra_hosts"] == [
        "h:192.0.2.4",
        "v6:::1",
    ]


def test_healthcheck_start_interval_is_dropped() -> None:
    r = one("healthcheck", {"test": ["CMD", "true"], "start_interval": "1s"})
    assert r.file["services"]["s"]["healthcheck"] == {"test": ["CMD", "true"]}
    assert ("s", "healthcheck.start_interval", "drop") in actions(r)


# ---------------------------------------------------------------- the real CLI and swarm


def stack_deploy(
    c: SwarmCluster, stack: str, doc: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    return c.docker(
        "stack",
        "deploy",
        "--resolve-image",
        "never",
        "-c",
        "-",
        stack,
        input=json.dumps(doc),
        check=False,
    )


def service_spec(c: SwarmCluster, name: str) -> dict[str, Any] | None:
    r = c.docker("service", "inspect", name, check=False)
    return json.loads(r.stdout)[0]["Spec"] if r.returncode == 0 else None


def comparable(c: SwarmCluster, stack: str, spec: dict[str, Any] | None) -> Any:
    """A service spec without what differs between two stacks of the same content (names,
    IDs): networks by name, the stack's own ones without the stack prefix."""
    if spec is None:
        return None
    s = copy.deepcopy(spec)
    for key in ("Name", "Labels"):
        s.pop(key, None)
    tt = s["TaskTemplate"]
    tt["ContainerSpec"].get("Labels", {}).pop("com.docker.stack.namespace", None)
    names = dict(
        line.split(" ", 1)
        for line in c.docker(
            "network", "ls", "--no-trunc", "--format", "{{.ID}} {{.Name}}"
        ).stdout.splitlines()
    )
    tt["Networks"] = sorted(
        names.get(n["Target"], "?").removeprefix(stack + "_") for n in tt.get("Networks", [])
    )
    for m in tt["ContainerSpec"].get("Mounts", []):
        m.get("VolumeOptions", {}).get("Labels", {}).pop("com.docker.stack.namespace", None)
    return s


@pytest.fixture
def stacks(swarm_cluster: SwarmCluster) -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        swarm_cluster.docker("stack", "rm", name, check=False)


def fresh(names: list[str]) -> str:
    names.append("t" + uuid.uuid4().hex[:8])
    return names[-1]


def plain(service: dict[str, Any]) -> dict[str, Any]:
    """A stack file with a service `s` and no tasks (replicas 0, unless the key under test is
    about replicas): the spec is what is compared."""
    d = {} if "scale" in service else {"replicas": 0}
    t = {**BASE, "deploy": {"replicas": 0}}
    return {"services": {"s": {**BASE, **service, "deploy": d}, "t": t}}


@pytest.mark.docker
def test_each_table_row_is_what_the_real_cli_does(
    swarm_cluster: SwarmCluster, stacks: list[str]
) -> None:
    """For each key: DROP and REFUSE rows -- the CLI rejects the raw key or deploys the same
    spec as without it; PASS_THROUGH rows -- the rendered key changes the spec; MAPPED rows --
    the raw key is lost (or the CLI gives it another meaning) and the rendered form changes
    the spec, with no notice from the CLI."""
    c = swarm_cluster

    def deployed(doc: dict[str, Any]) -> tuple[subprocess.CompletedProcess[str], Any]:
        name = fresh(stacks)
        r = stack_deploy(c, name, doc)
        return r, comparable(c, name, service_spec(c, f"{name}_s")) if r.returncode == 0 else None

    _, baseline = deployed(plain({}))
    assert baseline is not None
    wrong = []
    for key, value in SAMPLES.items():
        raw, raw_spec = deployed(plain({key: copy.deepcopy(value)}))
        raw_lost = raw.returncode != 0 or raw_spec == baseline
        if (key in sr.DROP or key in sr.REFUSE or key in sr.MAPPED) and not raw_lost:
            wrong.append(f"{key}: the table says swarm loses it, but the CLI kept it")
        if key in sr.REFUSE or key in sr.DROP:
            continue
        rendered = sr.render(plain({key: copy.deepcopy(value)}), "x")
        assert not rendered.refused, key
        r, spec = deployed(rendered.file)
        if r.returncode != 0:
            wrong.append(f"{key}: the rendered form is rejected: {r.stderr.strip()}")
        elif "Ignoring" in r.stdout + r.stderr:
            wrong.append(f"{key}: the rendered form draws a CLI notice: {r.stdout.strip()}")
        elif spec == baseline and key not in NOT_VISIBLE and key != "profiles":
            wrong.append(f"{key}: the rendered form is not honoured")
    assert wrong == []


def compose_config(c: SwarmCluster, folder: Path) -> dict[str, Any]:
    r = subprocess.run(
        ["docker", "compose", "config", "--format", "json"],
        cwd=folder,
        env=c.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    data = json.loads(r.stdout)
    assert isinstance(data, dict)
    return data


COMPOSE = """
name: shop
services:
  web:
    image: busybox:latest
    command: ["httpd", "-f", "-p", "8080", "-h", "/etc"]
    environment: {GREETING: "${GREETING:-hi}"}
    env_file: [web.env]
    labels: {tier: front}
    ports: [{target: 8080, published: 18080, mode: host}]
    volumes: [data:/data, {type: bind, source: /tmp, target: /hosttmp, read_only: true}]
    tmpfs: [/scratch]
    shm_size: 32m
    networks: {appnet: {aliases: [www]}}
    restart: on-failure:4
    mem_limit: 64m
    cpus: 0.5
    user: "0"
    working_dir: /etc
    hostname: web-host
    init: true
    read_only: false
    stop_signal: SIGTERM
    stop_grace_period: 4s
    extra_hosts: ["db.local=192.0.2.10"]
    dns_search: [example.com]
    ulimits: {nofile: {soft: 1000, hard: 2000}}
    sysctls: {net.core.somaxconn: "512"}
    cap_drop: [MKNOD]
    healthcheck: {test: ["CMD", "true"], interval: 2s, retries: 3}
    depends_on: {db: {condition: service_started}}
    build: .
    deploy:
      replicas: 2
      placement: {max_replicas_per_node: 1, constraints: [node.role==worker]}
      update_config: {parallelism: 1, failure_action: rollback, order: start-first}
      labels: {svc: web}
  db:
    image: busybox:latest
    command: sleep 100000
    networks: [appnet]
volumes: {data: {}}
networks: {appnet: {}}
"""


def _mounts(svc: dict[str, Any], stack: str) -> list[dict[str, Any]]:
    out = []
    for v in svc.get("volumes", []):
        m: dict[str, Any] = {"Type": v["type"], "Target": v["target"]}
        if v["type"] == "volume":
            m["Source"] = f"{stack}_{v['source']}"
        elif v["type"] == "bind":
            m["Source"] = v["source"]
        if v.get("read_only"):
            m["ReadOnly"] = True
        out.append(m)
    for t in svc.get("tmpfs", []):
        out.append({"Type": "tmpfs", "Target": t})
    if "shm_size" in svc:
        out.append(
            {
                "Type": "tmpfs",
                "Target": "/dev/shm",
                "TmpfsOptions": {"SizeBytes": int(svc["shm_size"])},
            }
        )
    return out


@pytest.mark.docker
def test_rendered_stack_deploys_and_equals_compose_config(
    swarm_cluster: SwarmCluster,
    stacks: list[str],
    tmp_path: Path,
) -> None:
    c = swarm_cluster
    (tmp_path / "compose.yaml").write_text(COMPOSE)
    (tmp_path / "web.env").write_text("FROM_FILE=from-env-file\n")
    cfg = compose_config(c, tmp_path)
    rendered = sr.render(cfg, tmp_path.name, dnsrr=True)
    assert rendered.stack == "shop" and not rendered.refused
    stacks.append(rendered.stack)
    r = stack_deploy(c, rendered.stack, rendered.file)
    assert r.returncode == 0, r.stderr
    assert "Ignoring" not in r.stdout + r.stderr  # nothing left for the CLI to drop silently

    want = cfg["services"]["web"]
    spec = service_spec(c, "shop_web")
    assert spec is not None
    cs = spec["TaskTemplate"]["ContainerSpec"]
    assert cs["Image"] == want["image"]
    assert cs["Args"] == want["command"]
    assert sorted(cs["Env"]) == sorted(f"{k}={v}" for k, v in want["environment"].items())
    assert "FROM_FILE=from-env-file" in cs["Env"]
    assert {k: v for k, v in cs["Labels"].items() if k != "com.docker.stack.namespace"} == want[
        "labels"
    ]
    # the CLI adds the stack and the image as service labels
    assert spec["Labels"] == {
        **want["deploy"]["labels"],
        "com.docker.stack.namespace": "shop",
        "com.docker.stack.image": want["image"],
    }
    assert cs["User"] == want["user"] and cs["Dir"] == want["working_dir"]
    assert cs["Hostname"] == want["hostname"] and cs["Init"] is True
    assert cs["StopSignal"] == want["stop_signal"] and cs["StopGracePeriod"] == 4_000_000_000
    assert cs["Hosts"] == ["192.0.2.10 db.local"]
    assert cs["DNSConfig"] == {"Search": want["dns_search"]}
    assert cs["Ulimits"] == [{"Name": "nofile", "Soft": 1000, "Hard": 2000}]
    assert cs["Sysctls"] == want["sysctls"]
    assert cs["CapabilityDrop"] == ["CAP_MKNOD"]
    assert cs["Healthcheck"] == {"Test": ["CMD", "true"], "Interval": 2_000_000_000, "Retries": 3}
    got_mounts = [
        {k: m[k] for k in ("Type", "Target", "Source", "ReadOnly", "TmpfsOptions") if k in m}
        for m in cs.get("Mounts", [])
    ]
    assert got_mounts == _mounts(want, "shop")
    assert spec["EndpointSpec"] == {
        "Mode": "dnsrr",
        "Ports": [
            {"Protocol": "tcp", "TargetPort": 8080, "PublishedPort": 18080, "PublishMode": "host"}
        ],
    }
    assert spec["Mode"] == {"Replicated": {"Replicas": 2}}
    tt = spec["TaskTemplate"]
    assert (
        tt["RestartPolicy"]["Condition"] == "on-failure" and tt["RestartPolicy"]["MaxAttempts"] == 4
    )
    assert tt["Resources"]["Limits"] == {"NanoCPUs": 500_000_000, "MemoryBytes": 64 << 20}
    assert tt["Placement"]["Constraints"] == ["node.role==worker"]
    assert tt["Placement"]["MaxReplicas"] == 1
    assert (
        spec["UpdateConfig"]["FailureAction"] == "rollback"
        and spec["UpdateConfig"]["Order"] == "start-first"
    )
    nets = {
        json.loads(
            c.docker("network", "inspect", n["Target"], "--format", "{{json .Name}}").stdout
        ): n.get("Aliases")
        for n in tt["Networks"]
    }
    assert nets == {"shop_appnet": ["www", "web"]}
    assert (
        c.docker("network", "inspect", "shop_appnet", "--format", "{{.Attachable}}").stdout.strip()
        == "true"
    )

    # ... and it runs: both services converge, the web tasks only on workers, one per node.
    deadline = time.monotonic() + 120
    while True:
        svcs = c.inspect("service", "inspect", "shop_web", "shop_db")
        ids = c.docker("service", "ps", "-q", "--no-trunc", "shop_web", "shop_db").stdout.split()
        states = decide_all(svcs, c.inspect("inspect", *ids) if ids else [])
        if overall(states) != "pending" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert overall(states) == "converged", states
    nodes = c.docker(
        "service", "ps", "--filter", "desired-state=running", "--format", "{{.Node}}", "shop_web"
    ).stdout.split()
    assert sorted(nodes) == sorted(n.hostname for n in c.workers)
