"""``--status``: what runs, per stack, through each stack's backend, with the stack's engine
and its newest dump."""

from __future__ import annotations

import concurrent.futures as cf
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace

from kompose_py.backends.base import StackStatus
from kompose_py.backends.choose import backend_for
from kompose_py.backends.docker import shown_engine
from kompose_py.db.dumpfiles import complete_dumps, dump_folder
from kompose_py.envfiles import StackEnv
from kompose_py.errors import KomposeError
from kompose_py.runner.run import Runner
from kompose_py.stacks import Stack


def query(stack: Stack, env: StackEnv, runner: Runner, default_env: Mapping[str, str],
          database: str | None, now: float) -> StackStatus:
    values = env.values
    dump = age = None
    if database:
        # A missing DB_DUMP_DIR reads as no dump: --status is a glance, db:list says why.
        dumps = complete_dumps(dump_folder(stack, values), database)
        if dumps:
            dump = dumps[-1].path
            age = max(0.0, now - dumps[-1].timestamp.timestamp())
    try:
        found = backend_for(values).status(stack, values, runner)
    except KomposeError as exc:
        found = StackStatus(stack.name, None, (), error=exc.message)
    return replace(found, engine=shown_engine(values, default_env), database=database,
                   newest_dump=dump, dump_age_seconds=age)


def query_all(stacks: Sequence[Stack], envs: Mapping[str, StackEnv],
              databases: Mapping[str, str | None], default_env: Mapping[str, str],
              runner: Runner, workers: int = 8) -> list[StackStatus]:
    """Every stack at once (up to ``workers`` threads); results keep stack order."""
    now = time.time()
    if not stacks:
        return []
    with cf.ThreadPoolExecutor(max_workers=max(1, min(workers, len(stacks)))) as pool:
        futures = [pool.submit(query, s, envs[s.name], runner, default_env,
                               databases.get(s.name), now) for s in stacks]
        return [f.result() for f in futures]
