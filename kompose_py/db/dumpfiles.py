"""Dump files: their names, their order, and whether one is a complete dump.

Names: ``<DB_NAME>_<YYYYMMDD_HHMMSS>Z[_N]`` then ``.sql``, ``.sql.gz``, ``.sql.zst``,
``.sql.lz4``, ``.dump`` (a custom archive) or ``.dir`` (a directory archive, a folder) in the
stack folder, the time in UTC
(``Z``) so that "newest" and cleanup stay right across time zones and daylight-saving
changes. Names without ``Z`` (kompose.sh and kompose before 0.2 wrote local time) still
read, as local time. Ordering is by the time in the name (then the same-second counter), never
by mtime: a copied or touched file must not become "the latest". Temporary files of an export
in progress are hidden (``.<name>.partial``, a folder for a directory archive) and never
match.

Whether a file is a complete dump is its format's business (postgres/formats.py).
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from kompose_py.db.postgres.formats import SUFFIX_PATTERN, DumpFormat, format_of

_DUMP = re.compile(
    r"(?P<db>.+)_(?P<ts>\d{8}_\d{6})(?P<utc>Z)?(?:_(?P<n>\d+))?(?:" + SUFFIX_PATTERN + ")")


@dataclass(frozen=True, order=True)
class Dump:
    timestamp: datetime  # aware (UTC or the local zone the name was written in)
    counter: int
    path: Path


def file_stem(db_name: str) -> str:
    """The part of a dump name that stands for the database. A DB_NAME may hold any
    character; a file name must stay one plain, visible name in the stack folder, so ``/``
    (and NUL) become ``_`` and leading dots (``..``, hidden files) become ``_``."""
    stem = db_name.replace("/", "_").replace("\0", "_")
    stripped = stem.lstrip(".")
    return "_" * (len(stem) - len(stripped)) + stripped


def parse_dump_name(path: Path, db_name: str) -> Dump | None:
    match = _DUMP.fullmatch(path.name)
    if match is None or match["db"] != file_stem(db_name):
        return None
    try:
        stamp = datetime.strptime(match["ts"], "%Y%m%d_%H%M%S")
    except ValueError:
        return None
    # Old names are local time: astimezone() on a naive time reads it in the local zone.
    aware = stamp.replace(tzinfo=timezone.utc) if match["utc"] else stamp.astimezone()
    return Dump(aware, int(match["n"] or 1), path)


def find_dumps(folder: Path, db_name: str) -> list[Dump]:
    """This database's dump files in ``folder``, complete or not, oldest first."""
    found = []
    for path in folder.iterdir():
        if path.name.startswith("."):
            continue
        dump = parse_dump_name(path, db_name)
        if dump is None or path.is_symlink():
            continue
        # A directory archive is a folder; every other format a file.
        if path.is_dir() if format_of(path).kind == "directory" else path.is_file():
            found.append(dump)
    found.sort()
    return found


def complete_dumps(folder: Path, db_name: str) -> list[Dump]:
    """Only the complete ones, oldest first: what "newest dump" and cleanup count."""
    return [d for d in find_dumps(folder, db_name) if incomplete_reason(d.path) is None]


def dump_name(db_name: str, when: datetime, counter: int, fmt: DumpFormat) -> str:
    suffix = f"_{counter}" if counter > 1 else ""
    utc = when.astimezone(timezone.utc)
    return f"{file_stem(db_name)}_{utc:%Y%m%d_%H%M%S}Z{suffix}{fmt.suffix}"


def human_size(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"  # pragma: no cover


def incomplete_reason(path: Path) -> str | None:
    """None for a complete dump, else why it is not one (a short phrase), by its format."""
    return format_of(path).incomplete(path)


def dump_size(path: Path) -> int:
    """Bytes of a dump file, or of every file of a directory archive."""
    try:
        if path.is_dir() and not path.is_symlink():
            return sum(entry.stat(follow_symlinks=False).st_size
                       for entry in os.scandir(path) if entry.is_file(follow_symlinks=False))
        return os.stat(path).st_size
    except OSError:
        return 0


def remove_dump(path: Path) -> None:
    """Delete a dump: a file, or a directory archive's folder with its files."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
