"""Finding the kompose root and its stacks, and selecting stacks by pattern."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from kompose_py.errors import NoStackError, UsageError

# Docker Compose's own order of preference (checked against `docker compose config`):
# the first main file found, plus the first override file found, whatever the main one's name.
COMPOSE_FILE_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")
OVERRIDE_FILE_NAMES = ("compose.override.yml", "compose.override.yaml",
                       "docker-compose.override.yml", "docker-compose.override.yaml")


@dataclass(frozen=True, eq=False)
class Stack:
    """A folder of the root that holds a compose file."""

    name: str
    path: Path
    compose_file: Path

    @property
    def env_file(self) -> Path:
        return self.path / ".env"

    @property
    def hooks_file(self) -> Path:
        return self.path / "hooks.sh"


ROOT_HINT = "pass --root DIR or set KOMPOSE_ROOT"


def resolve_root(option: str | None, environ: Mapping[str, str], cwd: Path) -> Path:
    """--root, else $KOMPOSE_ROOT, else the first folder found by :func:`find_root`, else the
    current directory (whose "no stacks" error then names --root and KOMPOSE_ROOT)."""
    if option is not None and not option.strip():
        # `--root "$UNSET_VARIABLE"` must not silently mean "wherever I happen to be".
        raise UsageError("--root needs a folder, got an empty value", hint=ROOT_HINT)
    if option:
        chosen = Path(option)
    elif environ.get("KOMPOSE_ROOT"):
        chosen = Path(environ["KOMPOSE_ROOT"])
    else:
        return find_root(cwd.resolve()) or cwd.resolve()
    root = (cwd / chosen).resolve()
    if not root.is_dir():
        raise UsageError(f"kompose root {str(chosen)!r} is not a directory", hint=ROOT_HINT)
    return root


def find_root(cwd: Path) -> Path | None:
    """As git finds its repository: ``./stacks``, then the current folder, then each folder
    above it, the first that holds a stack. From ``root/web/www`` that is ``root``: a folder
    inside a stack finds that stack's root.

    A stack may hold a compose project of its own (an upstream checkout with its
    docker-compose.yml, ``root/app/src``): the folder found is then a stack of the folder
    above it, and when that folder holds other stacks too it is the root."""
    if (cwd / "stacks").is_dir():
        return cwd / "stacks"  # even when empty: its "no stacks" error is the clear answer
    for folder in (cwd, *cwd.parents):
        for candidate in (folder / "stacks", folder):
            if _holds_stack(candidate):
                above = candidate.parent
                if (candidate.name and not candidate.name.startswith(".")
                        and _is_stack_folder(candidate)
                        and _holds_stack(above, besides=candidate.name)):
                    return above
                return candidate
    return None


def _is_stack_folder(folder: Path) -> bool:
    return any((folder / name).is_file() for name in COMPOSE_FILE_NAMES)


def _holds_stack(folder: Path, besides: str | None = None) -> bool:
    try:
        with os.scandir(folder) as entries:
            return any(not e.name.startswith(".") and e.name != besides and e.is_dir()
                       and _is_stack_folder(Path(e.path)) for e in entries)
    except OSError:  # not a folder, or not readable: not a root
        return False


def current_stack(root: Path, cwd: Path) -> str | None:
    """The stack whose folder holds ``cwd`` (``root/web/www`` → ``web``), or None."""
    try:
        parts = cwd.resolve().relative_to(root).parts
    except ValueError:
        return None
    if not parts or parts[0].startswith(".") or not _is_stack_folder(root / parts[0]):
        return None
    return parts[0]


def discover(root: Path) -> list[Stack]:
    """Every direct, non-hidden sub-folder holding a compose file, in code-point order."""
    stacks = []
    with os.scandir(root) as entries:
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            folder = Path(entry.path)
            for name in COMPOSE_FILE_NAMES:
                candidate = folder / name
                if candidate.is_file():
                    stacks.append(Stack(entry.name, folder, candidate))
                    break
    stacks.sort(key=lambda s: s.name)
    return stacks


def parse_pattern(pattern: str, here: str | None = None) -> tuple[list[str], list[str]]:
    """Split "a*, b,!c" into positive and negative globs; ``.`` is the stack ``here``."""
    include: list[str] = []
    exclude: list[str] = []
    for raw in pattern.split(","):
        item = raw.strip()
        if not item:
            continue
        if item.startswith("!"):
            negated = item[1:].strip()
            if not negated:
                raise UsageError(f"empty exclusion '!' in pattern {pattern!r}")
            exclude.append(_this_stack(here, pattern) if negated == "." else negated)
        else:
            include.append(_this_stack(here, pattern) if item == "." else item)
    if not include and not exclude:
        raise UsageError(f"empty pattern {pattern!r}", hint='use "*" for every stack')
    if not include:
        # "!news" alone reads as "everything but news".
        include.append("*")
    return include, exclude


def _this_stack(here: str | None, pattern: str) -> str:
    if here is None:
        raise UsageError(f"pattern {pattern!r}: '.' means the stack of the current folder, "
                         f"and {Path.cwd()} is not inside a stack folder of the root",
                         hint="run kompose from inside a stack folder, or name the stack")
    # A stack name is a folder name; escape glob characters so it matches only itself.
    return "".join(f"[{c}]" if c in "*?[" else c for c in here)


def select(stacks: Sequence[Stack], pattern: str, root: Path,
           cwd: Path | None = None) -> list[Stack]:
    if not stacks:
        # Before the pattern: in a folder without stacks, "." or a typo in the pattern is not
        # the problem, and this message names --root and KOMPOSE_ROOT.
        raise NoStackError(
            f"no stacks in {root}",
            hint="a stack is a sub-folder holding compose.yaml, compose.yml, "
            "docker-compose.yaml or docker-compose.yml; " + ROOT_HINT + " to look elsewhere",
        )
    here = None
    if "." in (item.strip().lstrip("!").strip() for item in pattern.split(",")):
        here = current_stack(root, cwd or Path.cwd())
        if here is None:
            raise UsageError(f"pattern {pattern!r}: '.' means the stack of the current folder, "
                             f"and {cwd or Path.cwd()} is not inside a stack folder of {root}",
                             hint="run kompose from inside a stack folder, or name the stack")
    include, exclude = parse_pattern(pattern, here)
    chosen = [
        s for s in stacks
        if any(fnmatchcase(s.name, g) for g in include)
        and not any(fnmatchcase(s.name, g) for g in exclude)
    ]
    if not chosen:
        raise NoStackError(
            f"no stack matches {pattern!r}",
            hint="available stacks: " + ", ".join(s.name for s in stacks),
        )
    return chosen
