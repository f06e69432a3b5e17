"""Finding stacks under a kompose root and selecting them by pattern (SPEC.md §1, §3)."""

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


@dataclass(frozen=True)
class Stack:
    name: str
    path: Path
    compose_file: Path

    @property
    def env_file(self) -> Path:
        return self.path / ".env"

    @property
    def hooks_file(self) -> Path:
        return self.path / "hooks.sh"

    def compose_files(self, env: Mapping[str, str]) -> list[Path]:
        """The files ``docker compose`` uses in this folder with this environment:
        ``COMPOSE_FILE`` (split on ``COMPOSE_PATH_SEPARATOR``, relative to the folder) when
        set, else the main file and the first override file found."""
        chosen = env.get("COMPOSE_FILE")
        if chosen:
            separator = env.get("COMPOSE_PATH_SEPARATOR") or os.pathsep
            return [self.path / name for name in chosen.split(separator) if name]
        files = [self.compose_file]
        for name in OVERRIDE_FILE_NAMES:
            if (self.path / name).is_file():
                files.append(self.path / name)
                break
        return files


def resolve_root(option: str | None, environ: Mapping[str, str], cwd: Path) -> Path:
    """--root, else $KOMPOSE_ROOT, else ./stacks when it exists, else the current directory."""
    if option:
        chosen = Path(option)
    elif environ.get("KOMPOSE_ROOT"):
        chosen = Path(environ["KOMPOSE_ROOT"])
    elif (cwd / "stacks").is_dir():
        chosen = cwd / "stacks"
    else:
        chosen = cwd
    root = (cwd / chosen).resolve()
    if not root.is_dir():
        raise UsageError(f"kompose root {str(chosen)!r} is not a directory",
                         hint="pass --root DIR or set KOMPOSE_ROOT")
    return root


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


def parse_pattern(pattern: str) -> tuple[list[str], list[str]]:
    """Split "a*, b,!c" into positive and negative globs."""
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
            exclude.append(negated)
        else:
            include.append(item)
    if not include and not exclude:
        raise UsageError(f"empty pattern {pattern!r}", hint='use "*" for every stack')
    if not include:
        # "!news" alone reads as "everything but news".
        include.append("*")
    return include, exclude


def select(stacks: Sequence[Stack], pattern: str, root: Path) -> list[Stack]:
    include, exclude = parse_pattern(pattern)
    if not stacks:
        raise NoStackError(
            f"no stacks in {root}",
            hint="a stack is a sub-folder holding compose.yaml, compose.yml, "
            "docker-compose.yaml or docker-compose.yml; pass --root DIR to look elsewhere",
        )
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
