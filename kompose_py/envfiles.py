"""Reading .env files as data and building one stack's environment.

The grammar is Docker Compose's, because compose reads the same stack ``.env`` and a user
must get the same values from ``kompose`` as from ``docker compose`` in that folder:

- ``KEY=value``, ``KEY: value``, ``export KEY=value``; a bare ``KEY`` takes the value a
  higher layer gives it, if any; ``#`` starts a comment at the start of a line or after
  white space in an unquoted value;
- ``'single quotes'`` are literal (``\\'`` is a quote); ``"double quotes"`` may span lines,
  know the escapes ``\\n \\t \\r \\\\ \\" \\$`` (and ``\\a \\b \\f \\v``), and are interpolated;
- interpolation: ``$VAR``, ``${VAR}``, ``${VAR:-d}``, ``${VAR-d}``, ``${VAR:+alt}``,
  ``${VAR+alt}``, ``${VAR:?err}``, ``${VAR?err}`` (defaults nest), ``$$`` for a ``$``.

python-dotenv's parser (the project's .env library until now) knows only ``${VAR}`` and
``${VAR:-d}`` and other escapes, so the lexer and the expander are written here, checked
value by value against ``docker compose config --environment`` in tests/test_compose_oracle.py.
Nothing in a .env file is ever executed: ``$(...)`` and backticks stay text.

Both passes are linear in the size of the file: no per-line copies of what came before.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kompose_py.errors import ConfigError, UsageError
from kompose_py.files import regular_file
from kompose_py.masking import is_secret_key, mask, secret_values

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

# Layers of a stack's environment, lowest first (later wins), as env:show names them.
STACK_ENV = "stack .env"
ENVIRONMENT = "environment"
ROOT_ENV = "root .env"
NETWORK = "--network"
OVERRIDE = "-e"
LAYERS = (STACK_ENV, ENVIRONMENT, ROOT_ENV, NETWORK, OVERRIDE)


# -- the lexer ------------------------------------------------------------------------------
# Compose (Go) has two notions of white space: a small one around '=' and inside keys, and
# unicode.IsSpace (every Unicode space, line breaks included) before a statement and at the
# end of an unquoted value. Python's isspace() also counts \x1c-\x1f, which Go does not.
_SPACE = " \t\v\f\r\x85\xa0"
_WIDE_SPACE = ("\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
               "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
_NAME_END = re.compile(r"[=:\n]")
# Compose accepts letters (any script), digits, _ . - [ ] and tabs inside a key, no space.
_KEY = re.compile(r"[\w.\-\[\]\t\v\f\r\x85\xa0]+\Z")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "a": "\a", "b": "\b", "f": "\f", "v": "\v",
            "\\": "\\", '"': '"'}


@dataclass(frozen=True, eq=False, repr=False)
class Binding:
    """One statement of a .env file: ``value`` is None for a bare ``KEY`` (inherit)."""

    key: str
    value: str | None
    quote: str  # "'", '"' or "" (unquoted)
    line: int


class EnvSyntaxError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def parse_bindings(text: str) -> Iterator[Binding]:
    """The statements of a .env text, in order. Raises :class:`EnvSyntaxError` (never
    with a value in its message: values may be secrets)."""
    pos, size, line = 0, len(text), 1
    while True:
        # Skip blank space, blank lines and comment lines up to the next statement.
        while pos < size:
            ch = text[pos]
            if ch == "\n":
                line += 1
                pos += 1
            elif ch in _WIDE_SPACE:
                pos += 1
            elif ch == "#":
                end = text.find("\n", pos)
                pos = size if end < 0 else end
            else:
                break
        if pos >= size:
            return
        start_line = line
        if text.startswith("export", pos) and pos + 6 < size and text[pos + 6] in _SPACE:
            pos += 6
            while pos < size and text[pos] in _SPACE:
                pos += 1
        match = _NAME_END.search(text, pos)
        end = match.start() if match else size
        key = text[pos:end].rstrip(_WIDE_SPACE)
        if not key:
            raise EnvSyntaxError(start_line, "a line starts with '=' or ':' (no variable name)")
        if not _KEY.match(key):
            # Not echoed: a line without '=' may well be a pasted secret.
            bad = next((c for c in key if not _KEY.match(c)), "?")
            raise EnvSyntaxError(
                start_line, "a variable name cannot contain a space (is the '=' missing?)"
                if bad == " " else f"unexpected character {bad!r} in a variable name")
        if match is None or match[0] == "\n":
            yield Binding(key, None, "", start_line)  # bare KEY: inherited
            pos = end
            continue
        pos = end + 1
        while pos < size and text[pos] in _SPACE:
            pos += 1
        quote = text[pos] if pos < size and text[pos] in "'\"" else ""
        if not quote:
            end = text.find("\n", pos)
            end = size if end < 0 else end
            raw = text[pos:end]
            comment = raw.find(" #")  # a tab before # does not start a comment in Compose
            if comment >= 0:
                raw = raw[:comment]
            yield Binding(key, raw.rstrip(_WIDE_SPACE), "", start_line)
            pos = end
            continue
        value, pos, newlines = _quoted(text, pos, quote, start_line)
        line += newlines
        yield Binding(key, value, quote, start_line)


def _quoted(text: str, pos: int, quote: str, line: int) -> tuple[str, int, int]:
    """A quoted value starting at ``text[pos] == quote``: (value, position after the
    closing quote, newlines inside)."""
    out: list[str] = []
    i, size = pos + 1, len(text)
    while i < size:
        ch = text[i]
        if ch == quote:
            value = "".join(out)
            return value, i + 1, text.count("\n", pos, i)
        if ch == "\\" and i + 1 < size:
            nxt = text[i + 1]
            if quote == "'":
                out.append("'" if nxt == "'" else "\\" + nxt)
            elif nxt == "$":
                out.append("$$")  # a literal dollar, as Compose escapes it
            else:
                out.append(_ESCAPES.get(nxt, "\\" + nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    kind = "double" if quote == '"' else "single"
    raise EnvSyntaxError(line, f"unterminated {kind}-quoted value (a {quote} is missing)")


# -- interpolation --------------------------------------------------------------------------
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# No re.DOTALL: Compose refuses a line break inside ${...}.
_BRACED = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+?])(.*))?\Z")

Lookup = Callable[[str], "str | None"]


class TemplateError(ValueError):
    pass


def _closing_brace(text: str, start: int) -> int:
    """Index of the ``}`` closing a ``${`` whose body starts at ``start``: every ``{`` in
    between opens a level, as in Compose (``${X:-{a}b}`` is ``{a}b``)."""
    depth = 0
    for i in range(start, len(text)):
        ch = text[i]
        if ch == "{":
            depth += 1
        elif ch == "}":
            if depth == 0:
                return i
            depth -= 1
    return -1


def substitute(template: str, lookup: Lookup) -> str:
    """Compose's interpolation of one value. Raises :class:`TemplateError`."""
    out: list[str] = []
    i = 0
    while True:
        j = template.find("$", i)
        if j < 0:
            out.append(template[i:])
            return "".join(out)
        out.append(template[i:j])
        nxt = template[j + 1:j + 2]
        if nxt == "$":
            out.append("$")
            i = j + 2
        elif nxt == "{":
            close = _closing_brace(template, j + 2)
            body = template[j + 2:close] if close >= 0 else template[j + 2:]
            if close < 0:
                raise TemplateError(f"invalid ${{...}} expression (no closing brace) "
                                    f"{_where(template, j)}")
            try:
                out.append(_braced(body, lookup))
            except _BadExpression:
                raise TemplateError(f"invalid expression {_where(template, j)}") from None
            i = close + 1
        else:
            name = _NAME.match(template, j + 1)
            if name is None:
                out.append("$")  # "$", "$1", "$ x": a plain dollar, as in Compose
                i = j + 1
            else:
                out.append(lookup(name[0]) or "")
                i = name.end()


class _BadExpression(ValueError):
    pass


def _where(template: str, start: int) -> str:
    """Where a bad ``${`` is, without quoting the value: values may hold credentials that
    no key name marks as secret (``DSN=${X:-postgres://u:pw@h``)."""
    return f"at character {start + 1} of the value (not shown: it may hold a secret)"


def _braced(body: str, lookup: Lookup) -> str:
    match = _BRACED.match(body)
    if match is None:
        raise _BadExpression(body)
    name, op, arg = match[1], match[2], match[3]
    value = lookup(name)
    if op is None:
        return value or ""
    # Compose expands the nested template whether or not it is used, so a ${X:?e} in the
    # branch not taken still fails the file.
    expanded = substitute(arg, lookup)
    empty_counts = op.startswith(":")
    missing = value is None or (empty_counts and value == "")
    kind = op[-1]
    if kind == "-":
        return expanded if missing else (value or "")
    if kind == "+":
        return "" if missing else expanded
    if missing:  # "?"
        raise TemplateError(f"required variable {name} is missing a value"
                            + (f": {expanded}" if expanded else ""))
    return value or ""


# -- reading files --------------------------------------------------------------------------
def read_env_file(path: Path, below: Mapping[str, str] | None = None,
                  above: Mapping[str, str] | None = None) -> dict[str, str]:
    """The bindings of one .env file, interpolated.

    A reference ``${VAR}`` looks in ``above`` first (layers that beat this file: that is
    how Compose reads a project .env, the shell environment first), then in the file's own
    earlier lines, then in ``below``. A bare ``KEY`` takes its value the same way.
    """
    text = _read_text(path)
    above = above or {}
    below = below or {}
    values: dict[str, str] = {}

    def lookup(name: str) -> str | None:
        for layer in (above, values, below):
            found = layer.get(name)
            if found is not None:
                return found
        return None

    try:
        for binding in parse_bindings(text):
            if binding.value is None:
                inherited = lookup(binding.key)
                if inherited is not None:
                    values[binding.key] = inherited
                continue
            if binding.quote == "'":
                values[binding.key] = binding.value
                continue
            try:
                value = substitute(binding.value, lookup)
            except TemplateError as exc:
                message = str(exc)
                if is_secret_key(binding.key) and not message.startswith("required"):
                    message = "invalid ${...} expression (not shown: the value is a secret)"
                # A message may quote a value (${X:?$DB_PASSWORD}, ${postgres://u:pw@h}).
                scope = {**below, **values, **above}
                message = mask(message, secret_values(scope))
                raise EnvSyntaxError(binding.line, f"{binding.key}: {message}") from None
            values[binding.key] = value
    except EnvSyntaxError as exc:
        raise ConfigError(f"{path}:{exc.line}: {exc.message}",
                          hint="the syntax is Docker Compose's: KEY=value, KEY=\"value\", "
                               "KEY='literal', ${VAR:-default}, $$ for a $") from None
    return values


def _read_text(path: Path) -> str:
    """A .env file's text; anything there that is not a readable regular file is an error,
    never "no settings" (a skipped backup must not look like success)."""
    regular_file(path, "a .env file")
    try:
        with path.open("rb") as stream:
            data = stream.read()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        # utf-8-sig drops a BOM left by Windows editors. CRLF needs nothing: a \r at the end
        # of a line is white space to the lexer, and inside quotes Compose keeps it.
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason})") from None


def env_file_present(path: Path) -> bool:
    """Whether there is something at ``path`` (a dangling link and a folder count: they
    fail when read, rather than silently meaning "no settings")."""
    return os.path.lexists(path)


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


@dataclass(frozen=True, eq=False, repr=False)
class StackEnv:
    """A stack's merged environment and where its values came from."""

    values: dict[str, str]
    files: tuple[Path, ...]
    # Keys set by the stack's own .env or by -e: decide "is this a database stack" (README,
    # Database commands).
    own_keys: frozenset[str] = field(default_factory=frozenset)
    # key -> the layer its value comes from (LAYERS).
    sources: dict[str, str] = field(default_factory=dict)
    # Keys the stack .env sets that a higher layer replaces with another value -> that layer.
    shadowed: dict[str, str] = field(default_factory=dict)


@dataclass(eq=False, repr=False)
class EnvBuilder:
    """Builds each stack's environment from the same start; the root .env is read once.

    Precedence, later wins: stack .env < the environment kompose was started with < root
    .env < --network < -e. That is what kompose.sh did for compose (it exported the root
    .env into its shell, and Compose lets the shell beat the project .env) and what
    ``docker compose`` does with the same shell.
    """

    environ: Mapping[str, str]
    root_env_file: Path
    network: str | None = None
    overrides: tuple[tuple[str, str], ...] = ()

    @functools.cached_property
    def _top(self) -> dict[str, str]:
        top = {} if self.network is None else {"NETWORK_NAME": self.network}
        top.update(self.overrides)
        return top

    @functools.cached_property
    def _root(self) -> dict[str, str] | None:
        """The root .env's values (None without one), read once for every stack."""
        if not env_file_present(self.root_env_file):
            return None
        return read_env_file(self.root_env_file, below=self.environ, above=self._top)

    @functools.cached_property
    def _higher(self) -> tuple[dict[str, str], dict[str, str]]:
        """Everything that beats a stack .env, merged, and where each value comes from."""
        merged: dict[str, str] = {}
        sources: dict[str, str] = {}
        layers = [(ENVIRONMENT, self.environ), (ROOT_ENV, self._root or {})]
        if self.network is not None:
            layers.append((NETWORK, {"NETWORK_NAME": self.network}))
        layers.append((OVERRIDE, dict(self.overrides)))
        for name, layer in layers:
            merged.update(layer)
            sources.update(dict.fromkeys(layer, name))
        return merged, sources

    def for_stack(self, stack_env_file: Path) -> StackEnv:
        higher, higher_sources = self._higher
        files = [self.root_env_file] if self._root is not None else []
        own: set[str] = {k for k, _ in self.overrides}
        stack_values: dict[str, str] = {}
        if env_file_present(stack_env_file):
            stack_values = read_env_file(stack_env_file, above=higher)
            files.append(stack_env_file)
            own.update(stack_values)
        values = {**stack_values, **higher}
        sources = {**dict.fromkeys(stack_values, STACK_ENV), **higher_sources}
        shadowed = {k: higher_sources[k] for k, v in stack_values.items()
                    if k in higher and higher[k] != v}
        return StackEnv(values, tuple(files), frozenset(own), sources, shadowed)


