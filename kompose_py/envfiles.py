"""Reading .env files as data and building one stack's environment (SPEC.md §4).

Parsing is python-dotenv's own parser (quotes, ``export``, comments, escapes); variable
references are resolved here rather than by ``dotenv_values`` because they must see the
layers merged before this file (a stack .env may use a root .env value), not ``os.environ``.
Nothing in a .env file is ever executed: ``$(...)`` and backticks stay literal text.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dotenv.parser import parse_stream
from dotenv.variables import parse_variables

from kompose_py.errors import ConfigError, UsageError

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# The value part of a binding whose value is single-quoted: it stays literal.
_SINGLE_QUOTED = re.compile(r"^[^=]*=[ \t]*'")
_SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN", "KEY", "CREDENTIAL")


def is_secret_key(key: str) -> bool:
    upper = key.upper()
    return any(word in upper for word in _SECRET_WORDS)


def read_env_file(path: Path, base: Mapping[str, str]) -> dict[str, str]:
    """The bindings of one .env file; ``${VAR}`` resolves against ``base`` and earlier lines."""
    try:
        # utf-8-sig drops a BOM left by Windows editors; universal newlines handle CRLF.
        with path.open(encoding="utf-8-sig") as stream:
            bindings = list(parse_stream(stream))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    values: dict[str, str] = {}
    for binding in bindings:
        if binding.error:
            lines = binding.original.string.strip().splitlines()
            text = lines[0] if lines else ""
            raise ConfigError(
                f"{path}:{binding.original.line}: cannot parse {text!r}",
                hint="expected KEY=value, KEY=\"value\", KEY='value' or a # comment",
            )
        if binding.key is None or binding.value is None:
            continue  # a comment, a blank line, or a bare KEY without a value
        if _SINGLE_QUOTED.match(binding.original.string.lstrip()):
            values[binding.key] = binding.value
            continue
        scope = {**base, **values}
        atoms = parse_variables(binding.value)
        values[binding.key] = "".join(atom.resolve(scope) for atom in atoms)
    return values


def parse_override(item: str) -> tuple[str, str]:
    """One ``-e KEY=VALUE``."""
    key, sep, value = item.partition("=")
    if not sep:
        raise UsageError(f"-e {item.split('=', maxsplit=1)[0]!r}: expected KEY=VALUE",
                         hint="for example: -e TAG=1.2")
    if not _IDENTIFIER.match(key):
        raise UsageError(f"-e: {key!r} is not a valid variable name",
                         hint="names are letters, digits and _, not starting with a digit")
    return key, value


@dataclass(frozen=True)
class StackEnv:
    """A stack's merged environment and where its values came from."""

    values: dict[str, str]
    files: tuple[Path, ...]
    # Keys set by the stack's own .env or by -e: decides "is this a database stack" (§8).
    own_keys: frozenset[str] = field(default_factory=frozenset)


@dataclass
class EnvBuilder:
    """Builds each stack's environment from the same start; the root .env is read once."""

    environ: Mapping[str, str]
    root_env_file: Path
    network: str | None = None
    overrides: tuple[tuple[str, str], ...] = ()

    @functools.cached_property
    def _root(self) -> dict[str, str] | None:
        """The root .env's values (None without one), read once for every stack."""
        if not self.root_env_file.is_file():
            return None
        return read_env_file(self.root_env_file, self.environ)

    def for_stack(self, stack_env_file: Path) -> StackEnv:
        values = dict(self.environ)
        files = []
        if self._root is not None:
            values.update(self._root)
            files.append(self.root_env_file)
        own: set[str] = set()
        if stack_env_file.is_file():
            stack_values = read_env_file(stack_env_file, values)
            values.update(stack_values)
            own.update(stack_values)
            files.append(stack_env_file)
        if self.network is not None:
            values["NETWORK_NAME"] = self.network
        for key, value in self.overrides:
            values[key] = value
            own.add(key)
        return StackEnv(values, tuple(files), frozenset(own))


def secret_values(env: Mapping[str, str]) -> list[str]:
    """Values to hide wherever kompose prints, longest first so overlaps mask fully."""
    found = {v for k, v in env.items() if v and is_secret_key(k)}
    return sorted(found, key=len, reverse=True)


def mask(text: str, secrets: Iterable[str]) -> str:
    for value in secrets:
        # Very short values would garble unrelated text if replaced everywhere; they are
        # still masked when they stand as a whole word.
        if len(value) >= 4:
            text = text.replace(value, "***")
        else:
            text = re.sub(rf"(?<![\w]){re.escape(value)}(?![\w])", "***", text)
    return text


_ASSIGNMENT = re.compile(r"(-*)([A-Za-z_][\w.-]*)=(.*)", re.DOTALL)


def mask_argument(arg: str) -> str:
    """``--password=x`` and ``DB_PASSWORD=x`` hide their value even when x is unknown here."""
    match = _ASSIGNMENT.fullmatch(arg)
    if match and match[3] and is_secret_key(match[2]):
        return f"{match[1]}{match[2]}=***"
    return arg


