"""Shell completion of PATTERN, COMMAND and a dump file argument (bash, zsh, fish via Typer).

Kept light on purpose: a completion call runs on every TAB, so this reads folder names only —
no hooks.sh, no psycopg, not the command layer; the root and stack .env only for a dump
argument (``DB_DUMP_DIR`` says where the dumps are), and for COMMAND one line of them:
``KOMPOSE_ORCHESTRATOR``, found with a regular expression, not the .env reader.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from kompose_py import stacks
from kompose_py.commands import BY_NAME


def _root(params: dict[str, Any]) -> Path | None:
    try:
        return stacks.resolve_root(params.get("root"), os.environ, Path.cwd())
    except Exception:
        return None


def complete_pattern(incomplete: str, names: list[str]) -> list[str]:
    """Stack names for the last item of a pattern list: ``web,d`` → ``web,db``; ``*,!n`` →
    ``*,!news``."""
    head, comma, last = incomplete.rpartition(",")
    prefix = head + comma
    bang = "!" if last.startswith("!") else ""
    last = last[len(bang):]
    return [f"{prefix}{bang}{n}" for n in names if n.startswith(last)]


def _join_colon_words(words: list[str]) -> list[str]:
    """bash splits ``ns:name`` into ``ns`` ``:`` ``name`` (``:`` is in COMP_WORDBREAKS)."""
    joined: list[str] = []
    for word in words:
        if joined and (word == ":" or joined[-1].endswith(":")):
            joined[-1] += word
        else:
            joined.append(word)
    return joined


def complete_args(ctx: Any, args: list[str], incomplete: str) -> list[str | tuple[str, str]]:
    """Typer's ``autocompletion`` callback for ``PATTERN COMMAND [ARGS]...``."""
    params = dict(getattr(ctx, "params", {}) or {})
    given = list(params.get("args") or [])
    if os.environ.get("_KOMPOSE_COMPLETE") == "complete_bash":
        words = _join_colon_words([*given, incomplete])
        word = words.pop()
        cut = len(word) - len(incomplete)  # bash replaces only the part after the last ':'
        found = _complete(params, words, word)
        return [(w[0][cut:], w[1]) if isinstance(w, tuple) else w[cut:] for w in found]
    return _complete(params, given, incomplete)


def _complete(params: dict[str, Any], given: list[str],
              incomplete: str) -> list[str | tuple[str, str]]:
    if params.get("list_stacks") or params.get("status"):
        given = given[:0]  # --list / --status take only a pattern
    root = _root(params)
    found = stacks.discover(root) if root is not None else []
    if not given:
        return list(complete_pattern(incomplete, [s.name for s in found]))
    if len(given) == 1:
        if params.get("list_stacks") or params.get("status"):
            return []
        own: list[str | tuple[str, str]] = [(name, spec.help) for name, spec in
                                            BY_NAME.items() if name.startswith(incomplete)]
        return own + sorted(c for c in _backend_commands(params, root, found, given[0])
                            if c.startswith(incomplete))
    spec = BY_NAME.get(given[1])
    if spec is not None and spec.completes_dump and len(given) == 2 and root is not None:
        chosen = [s for s in found if s.name == given[0]]
        if chosen:
            folder = _dump_folder(chosen[0], root)
            if folder is None or not folder.is_dir():
                return []
            return sorted(p.name for p in folder.iterdir()
                          if not p.name.startswith(".") and p.name.startswith(incomplete)
                          and _is_dump_name(p.name))
    return []


def _backend_commands(params: dict[str, Any], root: Path | None, found: list[stacks.Stack],
                      pattern: str) -> frozenset[str]:
    """The subcommands to offer after PATTERN: a swarm stack's when every stack it selects
    runs on Swarm, else Compose's."""
    from kompose_py.backends.compose import COMPOSE_COMMANDS

    if root is None:
        return COMPOSE_COMMANDS
    try:
        chosen = stacks.select(found, pattern, root)
    except Exception:
        return COMPOSE_COMMANDS
    given = [str(item) for item in params.get("env") or ()]
    root_env = _orchestrator_in(root / ".env")
    if all(_orchestrator(given, root_env, s) == "swarm" for s in chosen):
        from kompose_py.backends.swarmargs import VERBS

        return VERBS
    return COMPOSE_COMMANDS


_ORCHESTRATOR_LINE = re.compile(
    r"^[ \t]*(?:export[ \t]+)?KOMPOSE_ORCHESTRATOR[ \t]*[=:][ \t]*(.*)$", re.MULTILINE)
_UNKNOWN = "?"  # a value this reading cannot be sure of: offer everything


def _orchestrator_in(path: Path) -> str | None:
    """KOMPOSE_ORCHESTRATOR as a .env file sets it (its last line for the key), None when it
    does not; anything interpolated or unreadable is unknown."""
    try:
        text = path.read_text(errors="replace") if path.is_file() else ""
    except OSError:
        return _UNKNOWN
    found = _ORCHESTRATOR_LINE.findall(text)
    if not found:
        return None
    value = found[-1].strip()
    if value[:1] in ("'", '"'):
        value = value[1:value.find(value[0], 1)] if value.find(value[0], 1) > 0 else _UNKNOWN
    else:
        value = re.split(r"[ \t]#", value, maxsplit=1)[0].strip()
    return _UNKNOWN if "$" in value else value.strip().lower() or "compose"


def _orchestrator(given: list[str], root_env: str | None, stack: stacks.Stack) -> str:
    """The stack's KOMPOSE_ORCHESTRATOR in kompose's order of precedence: -e, the root .env,
    the environment, the stack .env."""
    for item in reversed(given):
        key, eq, value = item.partition("=")
        if eq and key.strip() == "KOMPOSE_ORCHESTRATOR":
            return value.strip().lower() or "compose"
    if root_env is not None:
        return root_env
    if os.environ.get("KOMPOSE_ORCHESTRATOR") is not None:
        return os.environ["KOMPOSE_ORCHESTRATOR"].strip().lower() or "compose"
    return _orchestrator_in(stack.env_file) or "compose"


def _dump_folder(stack: stacks.Stack, root: Path) -> Path | None:
    """Where db:import would look up a bare dump name: the stack's DB_DUMP_DIR folder, else
    the stack folder (None when an .env cannot be read: no guesses)."""
    from kompose_py.db.dumpfiles import dump_folder
    from kompose_py.envfiles import EnvBuilder

    try:
        env = EnvBuilder(dict(os.environ), root / ".env").for_stack(stack.env_file)
    except Exception:
        return None
    return dump_folder(stack, env.values)


def _is_dump_name(name: str) -> bool:
    from kompose_py.db.postgres.formats import FORMATS

    return name.endswith(tuple(f.suffix for f in FORMATS))
