"""The pure parts in-process, with fake runners and jobs (milliseconds, no engine): the
pre/post/error/finally table, the fan-out over stacks, crash containment, the subcommand and engine
checks' parsing, and --json for usage errors through ``cli.main``."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest

from kompose_py import cli
from kompose_py.backends import compose as composecli
from kompose_py.backends import docker
from kompose_py.cli import prechecks, wants_json
from kompose_py.envfiles import StackEnv
from kompose_py.fanout import run_all
from kompose_py.lifecycle import RunContext, StackRun, run_with_hooks
from kompose_py.results import StackResult, StepResult
from kompose_py.runner.command import Command, Outcome, failure_line
from kompose_py.runner.run import Runner
from kompose_py.runner.supervisor import Supervisor
from kompose_py.stacks import Stack


class Quiet:
    """A Reporter that keeps nothing."""

    def stack_start(self, *a: object, **k: object) -> None: ...
    def hook_start(self, *a: object, **k: object) -> None: ...
    def step_end(self, stack: str, step: StepResult) -> None: ...
    def command_start(self, *a: object, **k: object) -> None: ...
    def note(self, *a: object, **k: object) -> None: ...
    def progress(self, *a: object, **k: object) -> None: ...
    def stack_end(self, *a: object, **k: object) -> None: ...


class FakeRunner(Runner):
    """Answers each hook function / the command with a preset exit code; records the order."""

    def __init__(self, codes: dict[str, int], raise_on: str = "") -> None:
        super().__init__(Supervisor())
        self.codes, self.raise_on, self.ran = codes, raise_on, []

    def run(self, cmd: Command) -> Outcome:
        name = cmd.argv[7] if cmd.argv[0] == "bash" else "command"
        self.ran.append(name.removeprefix("hook_"))
        if name == self.raise_on:
            raise RuntimeError(f"boom with {cmd.env.get('DB_PASSWORD', '')}")
        code = self.codes.get(name.removeprefix("hook_"), 0)
        return Outcome("success" if code == 0 else "failed", code, 0.0,
                       stderr_tail=("progress", "Error: it broke", "more") if code else ())


ALL = "".join(f"hook_{p}_up() {{ :; }}\n" for p in ("pre", "post", "error", "finally"))


def one_stack(tmp_path: Path, hooks: str = ALL) -> Stack:
    folder = tmp_path / "s"
    folder.mkdir(exist_ok=True)
    (folder / "compose.yaml").write_text("services: {}\n")
    (folder / "hooks.sh").write_text(hooks)
    return Stack("s", folder, folder / "compose.yaml")


def pipeline(tmp_path: Path, runner: Runner, env: dict[str, str] | None = None) -> StackResult:
    stack = one_stack(tmp_path)
    ctx = RunContext(tmp_path, runner, Quiet())

    def main(run: StackRun) -> None:
        run.run_command("compose up", Command(("docker", "compose", "up"), stack.path, run.env))

    return run_with_hooks(ctx, stack, StackEnv(env or {}, ()), "up", main,
                          lambda run, phase: ["up"])


@pytest.mark.parametrize(("codes", "ran", "status", "failed_step", "exit_code"), [
    ({}, ["pre_up", "command", "post_up", "finally_up"], "success", "", 0),
    ({"pre_up": 4}, ["pre_up", "error_up", "finally_up"], "failed", "pre", 4),
    ({"command": 3}, ["pre_up", "command", "error_up", "finally_up"], "failed", "command", 3),
    ({"post_up": 5}, ["pre_up", "command", "post_up", "error_up", "finally_up"], "failed",
     "post", 5),
    # a failing error hook never hides the first failure
    ({"command": 3, "error_up": 9}, ["pre_up", "command", "error_up", "finally_up"], "failed",
     "command", 3),
    # a failing finally hook fails an otherwise good stack
    ({"finally_up": 6}, ["pre_up", "command", "post_up", "finally_up"], "failed", "finally", 6),
])
def test_pre_post_error_finally_table(tmp_path: Path, codes: dict[str, int], ran: list[str],
                                      status: str, failed_step: str, exit_code: int) -> None:
    runner = FakeRunner(codes)
    result = pipeline(tmp_path, runner)
    assert runner.ran == ran
    assert (result.status, result.failed_step, result.exit_code) == (status, failed_step,
                                                                     exit_code)


def test_failure_reason_is_the_first_error_line(tmp_path: Path) -> None:
    result = pipeline(tmp_path, FakeRunner({"command": 3}))
    assert result.message == "exit 3: Error: it broke"
    assert failure_line(("a", "b")) == "b" and failure_line(()) == ""
    assert failure_line(("psql: ERROR:  permission denied for table t", "x"),
                        strip_marker=True) == "permission denied for table t"
    assert failure_line((), "exit 3") == "exit 3"


def test_a_crash_in_the_command_is_this_stacks_failure_masked(tmp_path: Path) -> None:
    runner = FakeRunner({}, raise_on="command")
    result = pipeline(tmp_path, runner, {"DB_PASSWORD": "hunter2-secret"})
    assert runner.ran == ["pre_up", "command", "error_up", "finally_up"]
    assert result.status == "failed" and result.failed_step == "command"
    assert result.message == "internal error: boom with ***"


def test_cancel_stops_new_steps_but_runs_error_and_finally(tmp_path: Path) -> None:
    runner = FakeRunner({})
    runner.supervisor.cancelled.set()
    runner.supervisor.signum = 15
    result = pipeline(tmp_path, runner)
    assert runner.ran == ["error_up", "finally_up"]
    assert (result.status, result.exit_code) == ("cancelled", 143)


# -- fan-out --------------------------------------------------------------------------------
def stacks(*names: str) -> list[Stack]:
    return [Stack(n, Path(n), Path(n) / "compose.yaml") for n in names]


def test_orchestrator_order_fail_fast_and_crashes() -> None:
    seen: list[str] = []

    def job(stack: Stack) -> StackResult:
        seen.append(stack.name)
        if stack.name == "b":
            raise OSError(28, "No space left on device with s3cret")
        return StackResult(stack.name, "failed" if stack.name == "c" else "success")

    results = run_all(stacks("a", "b", "c", "d"), job, Supervisor(),
                      mask=lambda stack, text: text.replace("s3cret", "***"))
    assert seen == ["a", "b", "c", "d"]  # a crash does not stop the run
    assert results[1].status == "failed"
    assert results[1].message == "internal error: [Errno 28] No space left on device with ***"
    seen.clear()
    results = run_all(stacks("c", "a", "d"), job, Supervisor(), fail_fast=True)
    assert seen == ["c"]
    assert [r.status for r in results] == ["failed", "not run", "not run"]


def test_orchestrator_cancel_and_parallel_limit() -> None:
    supervisor = Supervisor()
    lock = threading.Lock()
    running, peak = [0], [0]
    gate = threading.Event()

    def job(stack: Stack) -> StackResult:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        gate.wait(0.05)
        if stack.name == "c":
            supervisor.cancelled.set()
        with lock:
            running[0] -= 1
        return StackResult(stack.name, "success")

    results = run_all(stacks(*"abcdefgh"), job, supervisor, parallel=3)
    assert peak[0] <= 3
    assert results[-1].status == "not run" and results[-1].message == "interrupted"


# -- checks before a compose run ------------------------------------------------------------
HELP = """Usage:  docker compose [OPTIONS] COMMAND

Options:
      --ansi string   Control when to print ANSI control

Management Commands:
  bridge      Convert compose files into another model

Commands:
  attach      Attach local standard input
  up          Create and start containers
  frobnicate  A plugin's command

Run 'docker compose COMMAND --help' for more information on a command.
"""


def test_parse_help_reads_every_commands_section() -> None:
    assert composecli.parse_help(HELP) == {"bridge", "attach", "up", "frobnicate"}
    assert composecli.parse_help("no sections here") == frozenset()


@pytest.mark.parametrize(("args", "stacks_n", "parallel", "warned"), [
    (["-d"], 3, 1, False), (["--detach"], 3, 1, False), (["--wait"], 3, 1, False),
    (["-dV"], 3, 1, False), (["--build"], 3, 1, True), ([], 1, 1, False), ([], 3, 2, False),
    (["--", "-d"], 2, 1, True),
])
def test_attach_warning(args: list[str], stacks_n: int, parallel: int, warned: bool) -> None:
    assert (prechecks.attach_warning("up", args, stacks_n, parallel) is not None) == warned
    assert prechecks.attach_warning("start", args, stacks_n, parallel) is None


@pytest.mark.parametrize(("argv", "wanted"), [
    (["--json", "x", "ps"], True), (["--root", "--json", "x", "ps"], False),
    (["-j", "2", "--json", "x"], True), (["x", "ps", "--json"], False), (["--bogus", "--json"],
                                                                         True),
])
def test_wants_json(argv: list[str], wanted: bool) -> None:
    assert wants_json(argv) is wanted


def test_engine_of_host_context_and_default(tmp_path: Path) -> None:
    import hashlib

    assert docker.engine_of({"DOCKER_HOST": "tcp://h:1"}) == docker.Engine(
        "tcp://h:1", "DOCKER_HOST")
    assert docker.engine_of({"HOME": str(tmp_path)}) == docker.Engine(
        docker.DEFAULT_HOST, "default")
    meta = tmp_path / "contexts" / "meta" / hashlib.sha256(b"far").hexdigest()
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps({"Endpoints": {"docker": {"Host": "ssh://x"}}}))
    assert docker.engine_of({"DOCKER_CONFIG": str(tmp_path), "DOCKER_CONTEXT": "far"}) == \
        docker.Engine("ssh://x", "context far")
    assert docker.engine_of({"DOCKER_CONFIG": str(tmp_path), "DOCKER_CONTEXT": "gone"}) is None


def test_unreachable_asks_the_socket(tmp_path: Path) -> None:
    path = tmp_path / "engine.sock"
    dead = docker.Engine(f"unix://{path}", "DOCKER_HOST")
    assert docker.unreachable(dead) is not None
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        server.listen()
        assert docker.unreachable(dead) is None
    assert docker.unreachable(docker.Engine("ssh://u@h", "DOCKER_HOST")) is None


def test_usage_error_with_json_is_a_document(capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:
    code = cli.main(["--json", "--root", str(tmp_path), "--bogus"])
    out, err = capsys.readouterr()
    assert code == 2
    doc = json.loads(out)
    assert doc["error"]["exit_code"] == 2 and "--bogus" in doc["error"]["message"]
    assert doc["stacks"] == [] and "kompose: error:" in err
    assert doc["command"] is None and doc["dry_run"] is None  # nothing was parsed
    code = cli.main(["--json", "--root", str(tmp_path), "-n", "*", "ps"])
    out, _ = capsys.readouterr()
    doc = json.loads(out)
    assert code == 3 and doc["error"]["exit_code"] == 3
    assert doc["command"] == "ps" and doc["dry_run"] is True  # what the command line said
    for args, command, dry_run in ((["*", "up", "-d", "--dry-run"], "up", True),
                                   (["*", "-d", "up"], None, None),
                                   (["--status", "*", "extra"], "--status", None)):
        cli.main(["--json", "--root", str(tmp_path), *args])
        doc = json.loads(capsys.readouterr()[0])
        assert (doc["command"], doc["dry_run"]) == (command, dry_run), args


def test_engine_check_only_for_docker_compose(tmp_path: Path) -> None:
    import io

    dead = {"DOCKER_HOST": f"unix://{tmp_path}/none.sock"}
    selected = stacks("a", "b")
    envs = {"a": StackEnv(dict(dead), ()),
            "b": StackEnv({**dead, "KOMPOSE_COMPOSE_CMD": "podman compose"}, ())}
    out = io.StringIO()
    blocked = prechecks.unreachable_engines(selected, envs, out)
    assert list(blocked) == ["a"]
    assert out.getvalue().count("cannot reach") == 1


def test_status_shows_an_engine_only_when_it_is_another_one(tmp_path: Path) -> None:
    from kompose_py.backends.docker import shown_engine

    mine = {"HOME": str(tmp_path)}  # no DOCKER_HOST, no context: the default socket
    assert shown_engine({**mine, "DOCKER_CONTEXT": "default"}, mine) is None
    assert shown_engine({**mine, "DOCKER_HOST": "unix:///var/run/docker.sock"}, mine) is None
    assert shown_engine({**mine, "DOCKER_HOST": "ssh://far"}, mine) == "DOCKER_HOST=ssh://far"
    assert shown_engine(mine, {**mine, "DOCKER_HOST": "tcp://h:1"}) is None  # kompose's own
    assert shown_engine({**mine, "DOCKER_CONTEXT": "gone"}, mine) == "DOCKER_CONTEXT=gone"
