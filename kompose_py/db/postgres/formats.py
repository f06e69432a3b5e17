"""Dump formats as rows of data: a file suffix, how pg_dump's output becomes the file, how a
file is known to be complete, and how it is read back for a load.

Rows: plain SQL (``.sql``), plain SQL compressed (``.sql.gz``, ``.sql.zst``, ``.sql.lz4``: by
pg_dump itself when it can, else by kompose as it streams out), pg_dump's custom archive
(``.dump``, one file) and its directory archive (``.dir/``, a folder). A row is chosen for a
file by its name; what a new export writes is chosen by :func:`plan_export`.

Complete: pg_dump ends a plain dump with the trailer ``-- PostgreSQL database dump complete``
(followed only by comment lines, blank lines and, since 13.22/15.14/17.6, an ``\\unrestrict``
line). A file without it was cut off (a full disk, a killed pg_dump, a copy in progress) and
must never replace a database nor count as a backup; a compressed one must also decompress to
its end without error. An archive is complete when its table of contents and every data block
or data file it names are whole (archives.py).
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from kompose_py.db import compression
from kompose_py.db.compression import Compression, Method
from kompose_py.db.postgres import archives
from kompose_py.files import new_private_file

TRAILER = b"-- PostgreSQL database dump complete"
_TAIL = 8192

def has_trailer(tail: bytes) -> bool:
    """Whether ``tail`` (a plain dump's last bytes) ends as pg_dump ends every dump: a blank
    line, then the three comment lines ``--``, ``-- PostgreSQL database dump complete``,
    ``--``, then only blank lines and the ``\\unrestrict`` line of recent point releases.
    The trailer's text alone is not enough: a table's row may hold it, and a dump cut right
    after that row would pass (psql ends COPY data at the end of its input and commits)."""
    at = tail.rfind(b"\n\n--\n" + TRAILER + b"\n--\n")
    if at < 0:
        return False
    rest = tail[at + len(TRAILER) + 8:]
    return all(not line.strip() or line.startswith(b"\\unrestrict ")
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


def _compressed_reason(method: Method) -> Callable[[Path], str | None]:
    def reason(path: Path) -> str | None:
        tail = b""
        try:
            if path.stat().st_size == 0:
                return "empty (0 bytes)"
            for chunk in compression.decompressed(path, method):
                tail = (tail + chunk)[-_TAIL:]
        except ValueError as exc:  # compression.decompressed's words: cut or damaged
            return str(exc)
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            return f"truncated or damaged {method} ({exc})"
        except OSError as exc:
            return f"unreadable: {exc.strerror or exc}"
        if not tail:
            return "empty (0 bytes of SQL)"
        return None if has_trailer(tail) else "no pg_dump completion trailer (cut off?)"
    return reason


def compress_into(spec: Compression) -> Callable[[Path], Callable[[IO[bytes]], None]]:
    """Compress pg_dump's plain output on the host, as it arrives (for a method the pg_dump
    that runs cannot write itself)."""
    def into(path: Path) -> Callable[[IO[bytes]], None]:
        def drain(source: IO[bytes]) -> None:
            with new_private_file(path) as raw:
                compression.compress_stream(source, raw, spec)
        return drain
    return into


def _open_plain(path: Path) -> IO[bytes]:
    return open(path, "rb")


class _Chunks:
    """A file-like ``read`` over the decompressed chunks of a compressed plain dump."""

    def __init__(self, path: Path, method: Method) -> None:
        self._chunks = compression.decompressed(path, method)

    def read(self, size: int = -1) -> bytes:
        return next(self._chunks, b"")

    def __enter__(self) -> _Chunks:
        return self

    def __exit__(self, *exc: object) -> None:
        self._chunks.close()  # type: ignore[attr-defined]  # a generator


def _opener(method: Method) -> Callable[[Path], IO[bytes]]:
    return lambda path: _Chunks(path, method)  # type: ignore[return-value]  # reads as IO


Kind = Literal["plain", "custom", "directory"]
KINDS: tuple[Kind, ...] = ("plain", "custom", "directory")


@dataclass(frozen=True)
class DumpFormat:
    """One kind of dump file: how it is named, checked and read back."""

    name: str  # as the README and db:list name it
    suffix: str  # of the file name, after <db>_<timestamp>Z[_N]
    # Why a file of this format is not a complete dump (None: it is).
    incomplete: Callable[[Path], str | None]
    kind: Kind = "plain"
    method: Method = "none"  # a plain dump's compression (an archive's is inside it)
    # The plain SQL a load feeds to psql (checked for psql meta-commands on the way); None
    # for an archive (pg_restore reads it).
    open_sql: Callable[[Path], IO[bytes]] | None = None

    @property
    def archive(self) -> bool:
        return self.kind != "plain"


def _plain_row(method: Method) -> DumpFormat:
    if method == "none":
        return DumpFormat("plain", ".sql", _plain_reason, open_sql=_open_plain)
    return DumpFormat(f"plain+{method}", ".sql" + compression.SUFFIX[method],
                      _compressed_reason(method), method=method, open_sql=_opener(method))


PLAIN, GZIP, ZSTD, LZ4 = (_plain_row(m) for m in ("none", "gzip", "zstd", "lz4"))
CUSTOM = DumpFormat("custom", ".dump", archives.incomplete_reason, kind="custom")
DIRECTORY = DumpFormat("directory", ".dir", archives.incomplete_reason, kind="directory")
# Longest suffix first: a name is read by the first row whose suffix it ends with.
FORMATS = (GZIP, ZSTD, LZ4, PLAIN, CUSTOM, DIRECTORY)
SUFFIX_PATTERN = "|".join(f.suffix.replace(".", r"\.") for f in FORMATS)


def format_of(path: Path) -> DumpFormat:
    """The format of a dump file, by its name (a name kompose does not know reads as plain)."""
    return next((f for f in FORMATS if path.name.endswith(f.suffix)), PLAIN)


def dump_kind(path: Path) -> dict[str, str | None]:
    """For listings: the dump's format (plain, custom, directory) and compression (for an
    archive as its header says; None when unreadable)."""
    fmt = format_of(path)
    if not fmt.archive:
        return {"format": fmt.kind, "compression": fmt.method}
    try:
        method: str | None = archives.read_archive(path).compression
    except (archives.Incomplete, OSError):
        method = None
    return {"format": fmt.kind, "compression": method}


@dataclass(frozen=True)
class ExportPlan:
    """What one export writes and how: the file's row, pg_dump's own options, and the
    compression kompose applies on the host (None: pg_dump's output is the file)."""

    fmt: DumpFormat
    options: tuple[str, ...]
    kompose_compresses: Compression | None = None

    @property
    def shown(self) -> str:
        """How the plan describes the file's making."""
        if self.kompose_compresses is not None:
            return f" (compressed with {self.kompose_compresses} by kompose)"
        return ""


def plan_export(kind: Kind, spec: Compression | None, major: int | None, jobs: int,
                where: str = "pg_dump") -> ExportPlan:
    """The plan for ``kind`` compressed as ``spec`` (None: pg_dump's default, i.e. none for
    plain, gzip inside an archive) by a pg_dump of ``major``. An archive with a method that
    pg_dump cannot write raises ValueError (a clear line): kompose can only compress a plain
    stream, never the inside of an archive."""
    if kind == "plain":
        if spec is None or spec.method == "none":
            return ExportPlan(PLAIN, ())
        row = _plain_row(spec.method)
        if major is not None and spec.pg_dump_can(major):
            return ExportPlan(row, (spec.pg_dump_option(major),))
        return ExportPlan(row, (), kompose_compresses=spec)
    row = CUSTOM if kind == "custom" else DIRECTORY
    options: list[str] = ["--format=" + kind]
    if kind == "directory":
        options.append(f"--jobs={max(1, jobs)}")
    if spec is not None:
        if major is not None and not spec.pg_dump_can(major):
            raise ValueError(
                f"{where} is version {major}, which cannot write {spec.method} into a {kind} "
                f"archive (lz4 and zstd need pg_dump 16 or newer); use --compress gzip, or "
                f"--format plain (kompose then compresses the SQL itself)")
        options.append(spec.pg_dump_option(major or 16))
    return ExportPlan(row, tuple(options))
