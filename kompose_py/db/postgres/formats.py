"""Dump formats as rows of data: a file suffix, how pg_dump's output becomes the file, how a
file is known to be complete, and how it is read back for a load. Today plain SQL (``.sql``)
and plain SQL gzipped by kompose (``.sql.gz``); an archive format (custom, directory) is one
more row.

Complete: pg_dump ends a plain dump with the trailer ``-- PostgreSQL database dump complete``
(followed only by comment lines, blank lines and, since 13.22/15.14/17.6, an ``\\unrestrict``
line). A file without it was cut off (a full disk, a killed pg_dump, a copy in progress) and
must never replace a database nor count as a backup; a ``.gz`` must also decompress to its
end without error.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from kompose_py.files import new_private_file

TRAILER = b"-- PostgreSQL database dump complete"
_TAIL = 8192

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



def _plain_reason(path: Path) -> str | None:
    try:
        size = path.stat().st_size
        if size == 0:
            return "empty (0 bytes)"
        with open(path, "rb") as handle:
            handle.seek(max(0, size - _TAIL))
            tail = handle.read()
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    return None if has_trailer(tail) else "no pg_dump completion trailer (cut off?)"


def _gzip_reason(path: Path) -> str | None:
    tail = b""
    try:
        if path.stat().st_size == 0:
            return "empty (0 bytes)"
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


def _gzip_into(path: Path) -> Callable[[IO[bytes]], None]:
    """Compress pg_dump's plain output on the host, as it arrives (both ways of reaching the
    server give the same .sql.gz, whatever pg_dump version runs)."""
    def drain(source: IO[bytes]) -> None:
        with new_private_file(path) as raw, gzip.GzipFile(
                filename="", mode="wb", compresslevel=6, fileobj=raw, mtime=0) as packed:
            while chunk := source.read(1 << 20):
                packed.write(chunk)
    return drain


def _open_plain(path: Path) -> IO[bytes]:
    return open(path, "rb")


def _open_gzip(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb")  # type: ignore[return-value]  # a GzipFile reads as IO


@dataclass(frozen=True)
class DumpFormat:
    """One way a dump is written and read back."""

    name: str  # as --format / the README name it
    suffix: str  # of the file name, after <db>_<timestamp>Z[_N]
    # pg_dump writes to stdout; when set, kompose transforms that stream into the file
    # (compression on the host); else stdout goes to the file as is.
    drain: Callable[[Path], Callable[[IO[bytes]], None]] | None
    # Why a file of this format is not a complete dump (None: it is).
    incomplete: Callable[[Path], str | None]
    # The plain SQL a load feeds to psql (checked for psql meta-commands on the way).
    open_sql: Callable[[Path], IO[bytes]]
    # How the plan describes the file's making.
    shown: str = ""


PLAIN = DumpFormat("plain", ".sql", None, _plain_reason, _open_plain)
GZIP = DumpFormat("gzip", ".sql.gz", _gzip_into, _gzip_reason, _open_gzip,
                  shown=" (compressed by kompose)")
# Longest suffix first: a name is read by the first row whose suffix it ends with.
FORMATS = (GZIP, PLAIN)
SUFFIX_PATTERN = "|".join(f.suffix.replace(".", r"\.") for f in FORMATS)


def format_of(path: Path) -> DumpFormat:
    """The format of a dump file, by its name (a name kompose does not know reads as plain)."""
    return next((f for f in FORMATS if path.name.endswith(f.suffix)), PLAIN)
