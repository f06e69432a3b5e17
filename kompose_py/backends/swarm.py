"""Docker Swarm, the second backend: a stack folder deployed with ``docker stack deploy`` to the
manager that ``DOCKER_HOST`` / ``DOCKER_CONTEXT`` name, from the files Compose itself reads in
that folder, with kompose's merged environment and Compose's interpolation.

``up`` is three steps, each shown and recorded: ``docker compose config --format json``
(a read-only question, asked in dry-runs too, so the plan carries the render's warnings),
``docker stack deploy --prune -c -`` with the rendered file on stdin (swarmrender.py), then
one wait for every service at once (swarmengine.py, swarmstate.py) until each has converged
or failed, within KOMPOSE_SWARM_WAIT_TIMEOUT seconds. ``down`` removes the stack and waits
until the manager lists nothing of it. Compose subcommands Swarm has no meaning for, and
arguments it has none for (swarmargs.py), are refused before any hook, with what to use
instead.

Settings (the stack's merged environment):
- KOMPOSE_SWARM_ENDPOINT_MODE: ``vip`` (default) or ``dnsrr`` (clusters without IPVS: every
  service gets ``endpoint_mode: dnsrr`` and ingress-published ports are refused);
- KOMPOSE_SWARM_RESOLVE_IMAGE: ``docker stack deploy --resolve-image`` (default: docker's,
  ``always``; ``never`` for clusters without a registry);
- KOMPOSE_SWARM_WAIT_TIMEOUT: seconds, default 300;
- KOMPOSE_SWARM_NODE_HOST: how to reach another node's engine for ``exec`` into a task there
  and ``top`` of its processes, a template such as ``ssh://admin@{hostname}`` (Swarm does not
  expose a node's engine).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import IO

from kompose_py.backends import swarmargs, swarmstate
from kompose_py.backends import swarmengine as engine
from kompose_py.backends.base import ServiceDetail, ServiceState, StackStatus, Steps
from kompose_py.backends.compose import (
    COMPOSE_COMMANDS,
    compose_files,
    compose_program,
    declared_networks,
    project_name,
)
from kompose_py.backends.docker import Container
from kompose_py.backends.swarmrender import Rendered, render
from kompose_py.runner.command import Command
from kompose_py.runner.run import Runner
from kompose_py.stacks import Stack

VERBS = swarmargs.VERBS
OFFLINE = frozenset({"config"})
ENDPOINT_KEY = "KOMPOSE_SWARM_ENDPOINT_MODE"
RESOLVE_KEY = "KOMPOSE_SWARM_RESOLVE_IMAGE"
NODE_HOST_KEY = "KOMPOSE_SWARM_NODE_HOST"

# Compose subcommand -> what to use on a swarm instead.
INSTEAD = {
    "build": "build and load or push the image on every node, then `up`",
    "create": "`up` (Swarm creates and starts a service in one step)",
    "start": "`up`, or `scale SERVICE=N`",
    "stop": "`scale SERVICE=0`, or `down`",
    "kill": "`scale SERVICE=0`, or `restart SERVICE`",
    "rm": "`down`",
    "run": "`exec SERVICE CMD` into a running task",
    "pause": "`scale SERVICE=0`",
    "unpause": "`scale SERVICE=N`",
    "pull": "nodes pull when a task starts; set KOMPOSE_SWARM_RESOLVE_IMAGE=always to pin "
            "the registry digest at `up`",
    "push": "`docker push` from where the image was built",
    "attach": "`logs -f SERVICE`",
    "port": "`config` (Swarm publishes what the stack file says)",
    "cp": "`docker cp` on the node that runs the task",
    "events": "`docker events` on the manager",
    "images": "`config` (the images the stack file names)",
    "wait": "`up` (it waits until every service has converged)",
    "watch": "`up` after each change",
    "ls": "`docker stack ls`",
}


class Swarm:
    """The Swarm backend (see :class:`kompose_py.backends.base.Backend`)."""

    name = "swarm"
    verbs = VERBS
    offline = OFFLINE

    def program(self, env: Mapping[str, str]) -> list[str]:
        return ["docker", "stack"]

    def files(self, stack: Stack, env: Mapping[str, str]) -> list[Path]:
        return compose_files(stack, env)

    def project(self, stack: Stack, env: Mapping[str, str]) -> str:
        return project_name(stack, env)

    def refusal(self, verb: str, args: Sequence[str] = ()) -> str | None:
        if verb in VERBS:
            return swarmargs.refusal(verb, args)
        if verb not in COMPOSE_COMMANDS | INSTEAD.keys():
            return None
        why = INSTEAD.get(verb, "`docker service` or `docker stack` on the manager")
        return f"{verb!r} has no meaning on a swarm stack; use {why}"

    def refused(self, stack: Stack, env: Mapping[str, str], verb: str,
                runner: Runner) -> list[str]:
        if verb != "up":
            return []
        rendered = self.render(stack, env, runner)
        # A compose config that fails is the deploy step's to report, with its own words.
        return [] if isinstance(rendered, str) else [f.line() for f in rendered.refused]

    def findings(self, stack: Stack, env: Mapping[str, str],
                 runner: Runner) -> tuple[list[str], list[str]]:
        rendered = self.render(stack, env, runner)
        if isinstance(rendered, str):
            return [f"docker compose config: {rendered}"], []
        return ([f"swarm: {f.line()}" for f in rendered.refused],
                [f"swarm: {f.line()}" for f in rendered.findings if f.action == "drop"])

    def subcommands(self, env: Mapping[str, str], runner: Runner) -> frozenset[str] | None:
        return VERBS

    def command(self, stack: Stack, env: Mapping[str, str], args: Sequence[str],
                interactive: bool) -> Command:
        """The single process of a one-step verb (``ps``, ``config`` without its stdin)."""
        project = self.project(stack, env)
        if args and args[0] == "ps":
            return Command(swarmargs.ps_argv(args[1:], project), stack.path, env)
        if args and args[0] == "down":
            return Command(("docker", "stack", "rm", project), stack.path, env)
        raise ValueError(f"swarm: {args[0] if args else '?'} takes several steps")

    def perform(self, steps: Steps, stack: Stack, args: Sequence[str],
                interactive: bool) -> None:
        verb, rest = args[0], list(args[1:])
        project = self.project(stack, steps.env)
        why = self.refusal(verb, rest)  # checked before any hook too, by the CLI
        if why:
            steps.fail(why)
            return
        if verb in ("up", "config"):
            rendered = self.render(stack, steps.env, steps.queries)
            if isinstance(rendered, str):
                steps.fail(f"docker compose config: {rendered}")
                return
            for finding in rendered.findings:
                if finding.key == "name" and not finding.service:
                    continue  # the stack name is the project name: nothing to say
                if finding.action == "refuse":
                    steps.note(f"error: {finding.line()}")
                else:
                    steps.detail(f"{'warning' if finding.action == 'drop' else 'note'}: "
                                 f"{finding.line()}")
            if verb == "config":
                steps.run_command("swarm config", _stdin_json(
                    ("docker", "stack", "config", "-c", "-"), stack, steps.env, rendered))
            elif rendered.refused:
                steps.fail(f"{len(rendered.refused)} key(s) refused on swarm: "
                           + "; ".join(f.line() for f in rendered.refused))
            else:
                limit = swarmargs.up_limit(rest, engine.wait_limit(steps.env))
                if isinstance(limit, str):
                    steps.fail(limit)
                else:
                    self._up(steps, stack, project, rendered, limit)
        elif verb == "down":
            if steps.run_command("swarm rm", self.command(stack, steps.env, args,
                                                          interactive)).ok:
                self._wait(steps, stack, lambda: engine.removed(
                    steps, stack.path, project, engine.wait_limit(steps.env)))
        elif verb == "ps":
            steps.run_command("swarm ps", self.command(stack, steps.env, args, interactive))
        elif verb == "logs":
            self._logs(steps, stack, project, rest, interactive)
        elif verb in ("restart", "scale"):
            self._update(steps, stack, project, verb, rest)
        elif verb == "exec":
            self._exec(steps, stack, project, rest, interactive)
        elif verb == "top":
            self._top(steps, stack, project, rest)
        else:
            steps.fail(f"swarm: {verb} is not supported")

    # -- up -----------------------------------------------------------------------------
    def render(self, stack: Stack, env: Mapping[str, str], runner: Runner) -> Rendered | str:
        """The stack file for ``docker stack deploy``, from ``docker compose config`` of the
        folder with this environment; or why Compose could not say."""
        outcome = runner.run(Command(
            (*compose_program(env), "config", "--format", "json"), stack.path, env,
            stdin="null", stdout="capture", capture_stderr=True, echo_stderr=False,
            timeout=60))
        if not outcome.ok:
            return outcome.reason
        try:
            config = json.loads(outcome.stdout.decode(errors="replace"))
        except ValueError as exc:
            return f"cannot read its output: {exc}"
        dnsrr = (env.get(ENDPOINT_KEY) or "vip").strip().lower() == "dnsrr"
        return render(config, self.project(stack, env), dnsrr=dnsrr)

    def _up(self, steps: Steps, stack: Stack, project: str, rendered: Rendered,
            limit: float) -> None:
        before: dict[str, dict[str, object]] = {}
        if not steps.dry_run:
            try:
                before = {str((s.get("Spec") or {}).get("Name")): s
                          for s in engine.services(steps.queries, steps.env, stack.path,
                                                   project)}
            except engine.EngineError as exc:
                steps.fail(str(exc))
                return
        resolve = (steps.env.get(RESOLVE_KEY) or "").strip()
        argv = ("docker", "stack", "deploy", "--detach=true", "--prune",
                *(("--resolve-image", resolve) if resolve else ()), "-c", "-", project)
        if not steps.run_command("swarm deploy", _stdin_json(argv, stack, steps.env,
                                                             rendered)).ok:
            return
        self._wait(steps, stack, lambda: engine.converge(steps, stack.path, project, before,
                                                         limit), limit)

    def _wait(self, steps: Steps, stack: Stack, wait: Callable[[], None],
              limit: float | None = None) -> None:
        if steps.dry_run:
            steps.note(f"would wait up to {limit or engine.wait_limit(steps.env):g}s "
                       f"({engine.WAIT_KEY}) for every service at once")
            return
        wait()

    # -- restart, scale -----------------------------------------------------------------
    def _update(self, steps: Steps, stack: Stack, project: str, verb: str,
                rest: Sequence[str]) -> None:
        names = [a for a in rest if not a.startswith("-")]
        try:
            before = {str((s.get("Spec") or {}).get("Name")): s
                      for s in engine.services(steps.queries, steps.env, stack.path, project)}
        except engine.EngineError as exc:
            steps.fail(str(exc))
            return
        if verb == "scale":
            argv: tuple[str, ...] = ("docker", "service", "scale", "--detach=true",
                                     *(f"{project}_{a}" for a in names))
            if not steps.run_command("swarm scale", Command(argv, stack.path, steps.env)).ok:
                return
        else:
            targets = [f"{project}_{n}" for n in names] or sorted(before)
            for target in targets:
                # A forced update replaces every task, one at a time as update_config says.
                if not steps.run_command(f"swarm restart {engine.short(target, project)}",
                                         Command(("docker", "service", "update", "--force",
                                                  "--detach=true", "--quiet", target),
                                                 stack.path, steps.env)).ok:
                    return
        self._wait(steps, stack, lambda: engine.converge(
            steps, stack.path, project, before, engine.wait_limit(steps.env)))

    # -- logs ---------------------------------------------------------------------------
    def _logs(self, steps: Steps, stack: Stack, project: str, rest: Sequence[str],
              interactive: bool) -> None:
        options, names = swarmargs.logs_options(rest)
        if not names:
            try:
                names = sorted(engine.short(str((s.get("Spec") or {}).get("Name")), project)
                               for s in engine.services(steps.queries, steps.env, stack.path,
                                                        project))
            except engine.EngineError as exc:
                steps.fail(str(exc))
                return
            if not names and not steps.dry_run:
                steps.fail(f"stack {project} has no service on this swarm")
                return
        targets = [f"{project}_{n}" for n in names]
        if len(targets) == 1:
            argv: tuple[str, ...] = ("docker", "service", "logs", *options, targets[0])
        else:
            # One `docker service logs` per service, side by side; each line already starts
            # with its task's name (service.slot.id@node).
            script = ('o=(); while [ "$1" != -- ]; do o+=("$1"); shift; done; shift; '
                      'for s; do docker service logs "${o[@]}" "$s" & done; rc=0; '
                      'for p in $(jobs -p); do wait "$p" || rc=$?; done; exit $rc')
            argv = ("bash", "-c", script, "kompose-logs", *options, "--", *targets)
        steps.run_command("swarm logs", Command(argv, stack.path, steps.env,
                                                foreground=interactive))

    # -- exec ---------------------------------------------------------------------------
    def _exec(self, steps: Steps, stack: Stack, project: str, rest: Sequence[str],
              interactive: bool) -> None:
        try:
            flags, index, service, command = swarmargs.exec_options(rest)
        except ValueError as exc:
            steps.fail(str(exc))
            return
        env = dict(steps.env)
        where = ""
        if steps.dry_run:
            container = f"<running task of {project}_{service}>"
        else:
            try:
                task = engine.running_task(steps.queries, env, stack.path,
                                           f"{project}_{service}", index)
            except engine.EngineError as exc:
                steps.fail(str(exc))
                return
            container = task.container
            reached = _node_env(env, task)
            if reached is None:
                steps.fail(f"the task of {service} runs on node {task.hostname}, whose "
                           f"engine Swarm does not expose; set {NODE_HOST_KEY} (e.g. "
                           "ssh://{hostname}) to exec there")
                return
            if not task.manager:
                env, where = reached, f" on {task.hostname}"
                silent = _silent_engine(steps, stack, env, task)
                if silent:
                    steps.fail(f"the task of {service} runs on node {task.hostname}, {silent}")
                    return
        tty = interactive and "-T" not in flags and "--no-TTY" not in flags and "-d" not in flags
        shown = [f for f in flags if f not in ("-T", "--no-TTY")]
        argv = ("docker", "exec", *(["-i"] if "-d" not in flags else []),
                *(["-t"] if tty else []), *shown, container, *command)
        steps.run_command(f"swarm exec{where}", Command(argv, stack.path, env,
                                                        foreground=interactive))

    # -- top ----------------------------------------------------------------------------
    def _top(self, steps: Steps, stack: Stack, project: str, rest: Sequence[str]) -> None:
        """``docker top`` of each running task, titled ``TASK@NODE`` on stdout as ``docker
        compose top`` titles each container. A task on a node kompose cannot reach is one
        warning line; the stack fails only when no task's processes could be shown."""
        services = [f"{project}_{n}" for n in rest]
        what = ", ".join(services) if services else f"stack {project}"
        if steps.dry_run:
            steps.run_command("swarm top", Command(
                ("docker", "top", f"<each running task of {what}>"), stack.path, steps.env))
            return
        try:
            tasks = engine.running_tasks(steps.queries, steps.env, stack.path, project,
                                         services)
        except engine.EngineError as exc:
            steps.fail(str(exc))
            return
        shown = 0
        unreachable = []
        for task in tasks:
            env = _node_env(steps.env, task)
            silent = _silent_engine(steps, stack, env, task) if env is not None else ""
            if env is None or silent:
                unreachable.append(task.hostname)
                steps.warn(f"task {task.name} runs on node {task.hostname}, " + (
                    silent or f"whose engine kompose cannot reach; set {NODE_HOST_KEY} (e.g. "
                    "ssh://{hostname}) to see its processes"))
                continue
            title = f"{task.name}@{task.hostname}"
            # The title goes where docker top's table goes (stdout), right above it.
            argv = ("sh", "-c", 'echo "$0"; exec docker top "$1"', title, task.container)
            if steps.run_command(f"swarm top {title}", Command(argv, stack.path, env)).ok:
                shown += 1
        if not tasks:
            steps.fail(f"{what} has no running task on this swarm")
        elif not shown and unreachable:
            steps.fail(f"no task's processes could be shown: every running task of {what} "
                       f"is on a node kompose cannot reach ({', '.join(sorted(set(unreachable)))}"
                       f"; {NODE_HOST_KEY})")

    # -- what kompose asks of it --------------------------------------------------------
    def owns(self, container: Container, stack: Stack, env: Mapping[str, str]) -> bool:
        return container.labels.get(engine.NAMESPACE_LABEL, "") == project_name(stack, env)

    def service_of(self, container: Container) -> str:
        namespace = container.labels.get(engine.NAMESPACE_LABEL, "")
        name = container.labels.get(engine.SERVICE_NAME_LABEL, "")
        return name.removeprefix(namespace + "_") if namespace and name else ""

    def networks(self, stack: Stack, env: Mapping[str, str], runner: Runner,
                 cached: bool = False) -> set[str] | str:
        # The rendered file keeps Compose's network names (<project>_<network>).
        return declared_networks(stack, env, runner, cached)

    def status(self, stack: Stack, env: Mapping[str, str], runner: Runner) -> StackStatus:
        """Services with replicas running/desired, nodes and update state, from one listing
        of the manager shared by every stack on it."""
        project = self.project(stack, env)
        listing = engine.engine_listing(runner, env, stack.path)
        base = StackStatus(stack.name, None, (), orchestrator=self.name)
        if listing.error:
            return replace(base, error=listing.error)
        found = engine.details(listing, project)
        if not found:
            return replace(base, error=f"stack {project} is not deployed")
        tasks = tuple(ServiceState(d.service, f"{d.service}@{node}", "running", "", ())
                      for d in found for node in d.nodes)
        # A service is "running" for the totals when every desired replica runs.
        return replace(base, expected=tuple(d.service for d in found),
                       containers=tuple(t for t in tasks
                                        if _complete(found, t.service)),
                       services=tuple(found))


def _silent_engine(steps: Steps, stack: Stack, env: Mapping[str, str],
                   task: engine.Task) -> str:
    """Why the engine of a task on another node does not answer where KOMPOSE_SWARM_NODE_HOST
    says ("" when it does, or the task is on the manager). Asked first: a failed `docker
    exec` says only "exit 1", as the command run in the task may, and an interactive one's
    stderr is not ours to read."""
    if task.manager:
        return ""
    try:
        engine.ask(steps.queries, env, stack.path, "version", "--format",
                   "{{.Server.Version}}", timeout=30)
    except engine.EngineError as exc:
        return (f"whose engine at {env.get('DOCKER_HOST')} ({NODE_HOST_KEY}) does not "
                f"answer: {str(exc).split(': ', 1)[-1]}")
    return ""


def _node_env(env: Mapping[str, str], task: engine.Task) -> dict[str, str] | None:
    """The environment whose docker CLI talks to the engine running ``task``: the stack's own
    for a task on the manager, KOMPOSE_SWARM_NODE_HOST's for another node (None: not set)."""
    if task.manager:
        return dict(env)
    template = env.get(NODE_HOST_KEY)
    if not template:
        return None
    reached = {k: v for k, v in env.items() if k != "DOCKER_CONTEXT"}
    reached["DOCKER_HOST"] = template.replace("{hostname}", task.hostname)
    return reached


def _complete(found: Sequence[ServiceDetail], service: str) -> bool:
    """Every desired replica runs and no update failed."""
    return any(d.service == service and d.running >= d.desired
               and d.update not in swarmstate.FAILED_UPDATE_STATES for d in found)


def _stdin_json(argv: Sequence[str], stack: Stack, env: Mapping[str, str],
                rendered: Rendered) -> Command:
    data = json.dumps(rendered.file).encode()

    def feed(sink: IO[bytes]) -> None:
        sink.write(data)

    return Command(tuple(argv), stack.path, env, feeder=feed)


SWARM = Swarm()
