"""Turn `docker compose config --format json` of a stack folder into a file for
`docker stack deploy -c -`, with one finding for every Compose key Swarm would not honour as is.

The output is JSON-able; the docker 28 CLI reads JSON on stdin (`-c -`) because JSON is YAML.
Every row of the tables below was checked against the installed `docker stack deploy`
(CLI 28.2, engine 20.10 / API 1.41): see tests/test_swarmrender.py, which re-checks each claim.

Three actions:
- map:    Swarm has the same meaning under another spelling; the key is rewritten.
- drop:   no effect on a swarm (or a tuning the engine cannot express); removed, with a warning.
- refuse: removing it would silently change what runs; the stack must not be deployed.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any, Literal

Action = Literal["map", "drop", "refuse"]


@dataclass(frozen=True)
class Finding:
    service: str  # "" for a top-level key
    key: str
    action: Action
    message: str

    def line(self) -> str:
        where = f"service {self.service}: " if self.service else ""
        verb = {"map": "mapped", "drop": "ignored on swarm", "refuse": "refused on swarm"}
        return f"{where}{self.key}: {verb[self.action]}: {self.message}"


@dataclass
class Rendered:
    stack: str
    file: dict[str, Any]
    findings: list[Finding] = field(default_factory=list)

    @property
    def refused(self) -> list[Finding]:
        return [f for f in self.findings if f.action == "refuse"]


# Keys `docker stack deploy` turns into the service spec unchanged (checked one by one).
PASS_THROUGH = frozenset(
    {
        "image",
        "command",
        "entrypoint",
        "environment",
        "labels",
        "ports",
        "volumes",
        "networks",
        "deploy",
        "healthcheck",
        "user",
        "working_dir",
        "hostname",
        "read_only",
        "stop_signal",
        "stop_grace_period",
        "init",
        "tty",
        "stdin_open",
        "dns",
        "dns_search",
        "extra_hosts",
        "secrets",
        "configs",
        "logging",
        "ulimits",
        "sysctls",
        "cap_add",
        "cap_drop",
        "credential_spec",
        "isolation",
    }
)

# key -> why dropping it is harmless on a swarm (or only loses a tuning knob)
DROP: dict[str, str] = {
    "build": "Swarm never builds; the image must already be on every node",
    "container_name": "Swarm names task containers itself",
    "depends_on": "Swarm starts services independently; no start order or condition",
    "links": "services reach each other by service name on a shared network",
    "external_links": "not supported by docker stack deploy",
    "expose": "services on one network reach every port anyway",
    "pull_policy": "docker stack deploy decides with --resolve-image",
    "attach": "only affects `docker compose up` output",
    "develop": "Compose watch only",
    "cgroup_parent": "docker stack deploy ignores it",
    "domainname": "docker stack deploy ignores it",
    "mac_address": "docker stack deploy ignores it",
    "dns_opt": "not accepted by docker stack deploy",
    "oom_score_adj": "accepted by docker stack deploy but not sent to this engine (API 1.41)",
    "oom_kill_disable": "not accepted by docker stack deploy",
    "mem_swappiness": "not accepted by docker stack deploy",
    "memswap_limit": "docker stack deploy refuses it; no swap limit on a service",
    "cpu_shares": "docker stack deploy refuses it; use deploy.resources",
    "cpu_quota": "docker stack deploy refuses it; use deploy.resources",
    "cpu_period": "not accepted by docker stack deploy",
    "cpu_count": "not accepted by docker stack deploy",
    "cpu_percent": "not accepted by docker stack deploy",
    "cpu_rt_period": "not accepted by docker stack deploy",
    "cpu_rt_runtime": "not accepted by docker stack deploy",
    "cpuset": "docker stack deploy refuses it; use deploy.resources",
    "blkio_config": "not accepted by docker stack deploy",
    "storage_opt": "not accepted by docker stack deploy",
    "annotations": "not accepted by docker stack deploy",
    "platform": "not accepted by docker stack deploy; the node's platform decides",
}

# key -> why it cannot simply be removed
REFUSE: dict[str, str] = {
    "privileged": "Swarm services cannot run privileged (docker stack deploy ignores it)",
    "devices": "Swarm services cannot get host devices (docker stack deploy ignores it)",
    "device_cgroup_rules": "not accepted by docker stack deploy",
    "gpus": "not accepted by docker stack deploy",
    "security_opt": "docker stack deploy ignores it; other security options would apply",
    "userns_mode": "docker stack deploy ignores it",
    "ipc": "docker stack deploy ignores it; shared IPC would be lost",
    "pid": "docker stack deploy ignores it; the PID namespace would differ",
    "uts": "not accepted by docker stack deploy",
    "cgroup": "not accepted by docker stack deploy",
    "group_add": "not accepted by docker stack deploy; the process would lack these groups",
    "runtime": "not accepted by docker stack deploy; another runtime would isolate differently",
    "volumes_from": "docker stack deploy refuses it; declare a named volume instead",
    "post_start": "not accepted by docker stack deploy; the lifecycle hook would not run",
    "pre_stop": "not accepted by docker stack deploy; the lifecycle hook would not run",
    "use_api_socket": "not accepted by docker stack deploy",
    "models": "not accepted by docker stack deploy",
    "provider": "not accepted by docker stack deploy",
    "label_file": "not accepted by docker stack deploy",
}

# Keys handled by code below (rewritten, not passed or removed as they are).
MAPPED = (
    "restart",
    "tmpfs",
    "shm_size",
    "mem_limit",
    "mem_reservation",
    "cpus",
    "pids_limit",
    "scale",
    "network_mode",
    "profiles",
)

# Healthcheck fields this engine (API 1.41) does not know: the CLI accepts and loses them.
_HEALTH_DROP = ("start_interval",)
_PORT_KEYS = ("mode", "target", "published", "protocol")
_TOP_PASS = frozenset({"services", "networks", "volumes", "secrets", "configs"})
_SIZE = re.compile(r"^(\d+)([bkmg]?)$", re.IGNORECASE)


def _bytes(text: str) -> int:
    m = _SIZE.match(text.strip())
    if not m:
        raise ValueError(text)
    return (
        int(m.group(1))
        * {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2).lower()]
    )


def _restart_policy(value: str) -> dict[str, Any] | None:
    name, _, attempts = value.partition(":")
    if name == "no":
        return {"condition": "none"}
    if name in ("always", "unless-stopped"):
        return {"condition": "any"}
    if name == "on-failure":
        policy: dict[str, Any] = {"condition": "on-failure"}
        if attempts.isdigit():
            policy["max_attempts"] = int(attempts)
        return policy
    return None


def _tmpfs_mount(entry: str) -> dict[str, Any] | None:
    target, _, opts = entry.partition(":")
    mount: dict[str, Any] = {"type": "tmpfs", "target": target}
    for opt in filter(None, opts.split(",")):
        k, _, v = opt.partition("=")
        if k == "size":
            mount.setdefault("tmpfs", {})["size"] = _bytes(v)
        elif k == "mode":
            mount.setdefault("tmpfs", {})["mode"] = int(v, 8)
        else:
            return None
    return mount


class _Service:
    def __init__(
        self, name: str, spec: dict[str, Any], findings: list[Finding], dnsrr: bool
    ) -> None:
        self.name, self.src, self.findings, self.dnsrr = name, spec, findings, dnsrr
        self.out: dict[str, Any] = {}
        self.host_network = False

    def note(self, key: str, action: Action, message: str) -> None:
        self.findings.append(Finding(self.name, key, action, message))

    def deploy(self) -> dict[str, Any]:
        d: dict[str, Any] = self.out.setdefault("deploy", {})
        return d

    def limits(self, kind: str) -> dict[str, Any]:
        r: dict[str, Any] = self.deploy().setdefault("resources", {}).setdefault(kind, {})
        return r

    def render(self) -> dict[str, Any]:
        for key, value in self.src.items():
            if key in ("command", "entrypoint") and value is None:
                # Compose writes null for "image default"; the stack schema wants a string or list
                continue
            if key.startswith("x-") or key in PASS_THROUGH:
                self.out[key] = copy.deepcopy(value)
            elif key in DROP:
                self.note(key, "drop", DROP[key])
            elif key in REFUSE:
                self.note(key, "refuse", REFUSE[key])
            elif key not in MAPPED:
                self.note(key, "refuse", "unknown to kompose's swarm table; not deployed blind")
        for key in MAPPED:
            if key in self.src:
                getattr(self, "_map_" + key)(self.src[key])
        self._fix_ports()
        self._fix_volumes()
        self._fix_healthcheck()
        self._fix_extra_hosts()
        if self.dnsrr and "endpoint_mode" not in self.deploy():
            self.deploy()["endpoint_mode"] = "dnsrr"
        if not self.out.get("deploy"):
            self.out.pop("deploy", None)
        if "image" not in self.out:
            self.note("image", "refuse", "no image: Swarm cannot build one")
        return self.out

    def _map_profiles(self, value: Any) -> None:
        self.note("profiles", "map", "already applied by docker compose config; removed")

    def _map_restart(self, value: Any) -> None:
        policy = _restart_policy(str(value))
        if policy is None:
            self.note("restart", "refuse", f"unknown restart value {value!r}")
        elif "restart_policy" in self.deploy():
            self.note("restart", "drop", "deploy.restart_policy is set and wins")
        else:
            self.deploy()["restart_policy"] = policy
            self.note("restart", "map", f"deploy.restart_policy.condition={policy['condition']}")

    def _map_tmpfs(self, value: Any) -> None:
        for entry in [value] if isinstance(value, str) else list(value):
            mount = _tmpfs_mount(str(entry))
            if mount is None:
                self.note("tmpfs", "refuse", f"tmpfs option in {entry!r} has no swarm equivalent")
                return
            self.out.setdefault("volumes", []).append(mount)
        self.note(
            "tmpfs", "map", "volumes entries of type tmpfs (docker stack deploy drops tmpfs:)"
        )

    def _map_shm_size(self, value: Any) -> None:
        size = _bytes(str(value))
        self.out.setdefault("volumes", []).append(
            {"type": "tmpfs", "target": "/dev/shm", "tmpfs": {"size": size}}
        )
        self.note("shm_size", "map", f"a tmpfs mount on /dev/shm of {size} bytes")

    def _map_mem_limit(self, value: Any) -> None:
        self._resource("mem_limit", "limits", "memory", str(_bytes(str(value))))

    def _map_mem_reservation(self, value: Any) -> None:
        self._resource("mem_reservation", "reservations", "memory", str(_bytes(str(value))))

    def _map_cpus(self, value: Any) -> None:
        self._resource("cpus", "limits", "cpus", str(value))

    def _map_pids_limit(self, value: Any) -> None:
        self._resource("pids_limit", "limits", "pids", int(value))

    def _resource(self, key: str, kind: str, field_: str, value: Any) -> None:
        target = self.limits(kind)
        if field_ in target:
            self.note(key, "drop", f"deploy.resources.{kind}.{field_} is set and wins")
        else:
            target[field_] = value
            self.note(key, "map", f"deploy.resources.{kind}.{field_}")

    def _map_scale(self, value: Any) -> None:
        if "replicas" in self.deploy():
            self.note("scale", "drop", "deploy.replicas is set and wins")
        else:
            self.deploy()["replicas"] = int(value)
            self.note("scale", "map", "deploy.replicas")

    def _map_network_mode(self, value: Any) -> None:
        # A service attached to the engine's predefined `host` network runs in the node's
        # network namespace, as network_mode: host does (verified on the cluster).
        if value == "host":
            self.out["networks"] = {"host": None}
            self.host_network = True
            self.note("network_mode", "map", "attached to the predefined host network")
        else:
            self.note("network_mode", "refuse", f"network_mode {value!r} has no swarm equivalent")

    def _fix_ports(self) -> None:
        ports = self.out.get("ports")
        if not ports:
            return
        fixed = []
        for p in ports:
            if "host_ip" in p:
                self.note(
                    "ports", "refuse", f"host_ip {p['host_ip']}: Swarm publishes on every address"
                )
            if self.dnsrr and p.get("mode", "ingress") == "ingress":
                self.note(
                    "ports",
                    "refuse",
                    f"published port {p.get('published')} needs the ingress routing mesh, "
                    "which needs IPVS (absent here); use mode: host",
                )
            q = {k: p[k] for k in _PORT_KEYS if k in p}
            if "published" in q:
                # the stack schema wants an integer; Compose writes a string
                q["published"] = int(q["published"])
            fixed.append(q)
        self.out["ports"] = fixed

    def _fix_volumes(self) -> None:
        for v in self.out.get("volumes", []):
            if (
                isinstance(v, dict)
                and v.get("type") == "bind"
                and v.get("bind", {}).pop("create_host_path", None)
            ):
                # a missing source fails the task instead of being created
                self.note(
                    "volumes",
                    "drop",
                    f"bind.create_host_path for {v.get('source')}: "
                    "Swarm never creates a bind source",
                )
                if not v["bind"]:
                    del v["bind"]

    def _fix_healthcheck(self) -> None:
        hc = self.out.get("healthcheck")
        for k in _HEALTH_DROP:
            if isinstance(hc, dict) and k in hc:
                del hc[k]
                self.note(
                    f"healthcheck.{k}",
                    "drop",
                    "accepted by the CLI, unknown to this engine (API 1.41)",
                )

    def _fix_extra_hosts(self) -> None:
        hosts = self.out.get("extra_hosts")
        if isinstance(hosts, dict):
            hosts = [
                f"{h}={ip}"
                for h, ips in hosts.items()
                for ip in ([ips] if isinstance(ips, str) else ips)
            ]
        if hosts is not None:
            # Compose writes host=ip; the stack CLI splits host:ip on the first colon
            self.out["extra_hosts"] = [h.replace("=", ":", 1) if "=" in h else h for h in hosts]


def _top(
    kind: str, items: dict[str, Any], findings: list[Finding], attachable: bool
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, given in (items or {}).items():
        spec = dict(given or {})
        if kind in ("secrets", "configs"):
            for k in ("content", "environment"):
                if k in spec:
                    findings.append(
                        Finding(
                            "",
                            f"{kind}.{name}.{k}",
                            "refuse",
                            "docker stack deploy takes only file or external",
                        )
                    )
        if kind == "networks" and attachable and not spec.get("external"):
            # lets a one-off container join, e.g. a database client run from the manager
            spec["attachable"] = True
        out[name] = spec
    return out


def render(
    config: dict[str, Any], project: str, *, dnsrr: bool = False, attachable: bool = True
) -> Rendered:
    """`config`: `docker compose config --format json`; `project`: the Compose project name,
    used as the stack name. `dnsrr`: the cluster has no IPVS, so services get
    `endpoint_mode: dnsrr` and ingress ports are refused."""
    findings: list[Finding] = []
    stack = str(config.get("name") or project)
    if "name" in config:
        findings.append(Finding("", "name", "map", f"stack name {stack}"))
    out: dict[str, Any] = {}
    host_network = False
    for key, value in config.items():
        if key == "services":
            out["services"] = {}
            for n, s in sorted((value or {}).items()):
                svc = _Service(n, s, findings, dnsrr)
                out["services"][n] = svc.render()
                host_network |= svc.host_network
        elif key in _TOP_PASS:
            out[key] = _top(key, value, findings, attachable)
        elif key.startswith("x-"):
            out[key] = copy.deepcopy(value)
        elif key == "version":
            continue
        elif key != "name":
            findings.append(Finding("", key, "refuse", "top-level key unknown to the swarm table"))
    if host_network:
        out.setdefault("networks", {})["host"] = {"external": True, "name": "host"}
    return Rendered(stack, out, findings)
