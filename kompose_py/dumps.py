"""Dump files: their names, their order, and whether one is a complete dump.

Names: ``<DB_NAME>_<YYYYMMDD_HHMMSS>Z[_N].sql[.gz]`` in the stack folder, the time in UTC
(``Z``) so that "newest" and cleanup stay right across time zones and daylight-saving
changes. Names without ``Z`` (kompose.sh and kompose before 0.2 wrote local time) still
read, as local time. Ordering is by the time in the name (then the same-second counter), never
by mtime: a copied or touched file must not become "the latest". Temporary files of an export
in progress are hidden (``.<name>.partial``) and never match.

Complete: pg_dump ends a plain dump with the trailer ``-- PostgreSQL database dump complete``
(followed only by comment lines, blank lines and, since 13.22/15.14/17.6, an ``\\unrestrict``
line). A file without it was cut off (a full disk, a killed pg_dump, a copy in progress) and
must never replace a database nor count as a backup; a ``.gz`` must also decompress to its
end without error.
"""

from __future__ import annotations

import gzip
import os
import re
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

_DUMP = re.compile(
    r"(?P<db>.+)_(?P<ts>\d{8}_\d{6})(?P<utc>Z)?(?:_(?P<n>\d+))?\.sql(?P<gz>\.gz)?")
TRAILER = b"-- PostgreSQL database dump complete"
_TAIL = 8192


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
        if dump is not None and path.is_file() and not path.is_symlink():
            found.append(dump)
    found.sort()
    return found


def complete_dumps(folder: Path, db_name: str) -> list[Dump]:
    """Only the complete ones, oldest first: what "newest dump" and cleanup count."""
    return [d for d in find_dumps(folder, db_name) if incomplete_reason(d.path) is None]


def dump_name(db_name: str, when: datetime, counter: int, compressed: bool) -> str:
    suffix = f"_{counter}" if counter > 1 else ""
    utc = when.astimezone(timezone.utc)
    return f"{file_stem(db_name)}_{utc:%Y%m%d_%H%M%S}Z{suffix}.sql{'.gz' if compressed else ''}"


def has_trailer(tail: bytes) -> bool:
    at = tail.rfind(TRAILER)
    if at < 0:
        return False
    rest = tail[at + len(TRAILER):]
    if not rest.startswith(b"\n"):
        return False
    # After the trailer line, only what pg_dump writes there: comments, blank lines and
    # the \unrestrict of recent point releases.
    return all(not line.strip() or line.startswith((b"--", b"\\unrestrict "))
               for line in rest.splitlines())


def incomplete_reason(path: Path, compressed: bool | None = None) -> str | None:
    """None for a complete dump, else why it is not one (a short phrase). ``compressed``:
    whether it is a gzip (default: by its name)."""
    try:
        size = path.stat().st_size
        if size == 0:
            return "empty (0 bytes)"
        if path.name.endswith(".gz") if compressed is None else compressed:
            return _gzip_reason(path)
        with open(path, "rb") as handle:
            handle.seek(max(0, size - _TAIL))
            tail = handle.read()
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    return None if has_trailer(tail) else "no pg_dump completion trailer (cut off?)"


def _gzip_reason(path: Path) -> str | None:
    tail = b""
    try:
        with gzip.open(path, "rb") as source:
            while chunk := source.read(1 << 20):
                tail = (tail + chunk)[-_TAIL:]
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        return f"truncated or damaged gzip ({exc})"
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    if not tail:
        return "empty (0 bytes of SQL)"
    return None if has_trailer(tail) else "no pg_dump completion trailer (cut off?)"


def dump_size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
