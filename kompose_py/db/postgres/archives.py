"""Whether a pg_dump archive (``-Fc`` custom file, ``-Fd`` directory) is complete, cheaply:
headers are parsed and data is skipped over by seeking, nothing is restored.

``pg_restore --list`` is not enough: it reads the header and the table of contents only, and
pg_dump writes the TOC *before* the data, so an archive cut anywhere in its data lists fine
and exits 0. The layout (pg_dump's ``pg_backup_archiver.c`` / ``pg_backup_custom.c`` /
``pg_backup_directory.c``, archive versions 1.12 to 1.16: pg_dump 11 to 17):

- header: ``PGDMP``, version bytes (major, minor, revision), int size, offset size, format
  (1 custom; a directory's toc.dat says 3), compression (1.15+: one byte, 0 none 1 gzip
  2 lz4 3 zstd; before: an int level, 0 none else gzip), seven ints of creation time, then
  strings: database name, server version, pg_dump version.
- an int is a sign byte and ``int size`` little-endian bytes; a string an int length (-1: NULL)
  and that many bytes.
- TOC: an int count, then per entry: dump id, had-dumper, table oid, oid, tag, desc, section,
  definition, drop, copy statement, namespace, tablespace, table AM (1.14+), relkind (an int,
  1.16+), owner, "false" (WITH OIDS), dependency ids up to a NULL, then the format's extra:
  custom: an offset (flag byte 1 not set, 2 set, 3 no data; ``offset size`` bytes); directory:
  the data file's name (empty: no data).
- custom data, after the TOC, one block per entry with data, in TOC order: a type byte (1 data,
  3 large objects), the dump id, then chunks (int length, bytes) up to a 0 length; large
  objects: per object its oid and such a chunk run, up to an oid 0. A seekable output gets its
  TOC rewritten at the end with the offsets set; a piped one (``docker exec pg_dump -Fc >
  file``) keeps them unset: both are complete archives, so the check walks the blocks itself.
- directory: ``toc.dat`` (header and TOC, written last), ``<id>.dat`` per table (plus .gz,
  .lz4 or .zst by the compression), large objects listed in ``blobs.toc`` (≤16) or
  ``blobs_<id>.toc`` (17) as ``<oid> blob_<oid>.dat`` lines.

A complete custom archive: the header and TOC parse, every entry that has data has exactly one
block, each block's chunk run ends with its 0, a set offset points at its block, and the file
ends right after the last block. A complete directory: toc.dat parses to its last byte, every
data file it names exists and its compression stream ends properly (an uncompressed table file
ends with COPY's ``\\.`` line and two blank lines, as pg_dump writes it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

from kompose_py.db.compression import Method
from kompose_py.db.compression import incomplete_reason as stream_reason

MAGIC = b"PGDMP"
FORMATS = {1: "custom", 3: "tar", 5: "directory"}
COMPRESSION: dict[int, Method] = {0: "none", 1: "gzip", 2: "lz4", 3: "zstd"}
SUFFIX: dict[Method, str] = {"none": "", "gzip": ".gz", "lz4": ".lz4", "zstd": ".zst"}
OLDEST, NEWEST = (1, 12), (1, 16)  # the archive versions of pg_dump 11 .. 17
_BLK_DATA, _BLK_BLOBS = 1, 3
_NOT_SET, _SET, _NO_DATA = 1, 2, 3
_WINDOW = 1 << 20
_COPY_END = b"\n\\.\n\n\n"


class Incomplete(ValueError):
    """Why an archive is not complete: one line."""


@dataclass
class Entry:
    dump_id: int
    desc: str
    tag: str
    namespace: str
    offset_flag: int = _NO_DATA  # custom
    offset: int = 0  # custom
    filename: str = ""  # directory
    copy: bool = False  # its data is COPY text (ends with the \\. line)

    @property
    def name(self) -> str:
        qualified = f"{self.namespace}.{self.tag}" if self.namespace else self.tag
        return f"{self.desc} {qualified}"


@dataclass
class Archive:
    format: Literal["custom", "directory"]
    version: tuple[int, int, int]
    compression: Method
    database: str
    server_version: str
    pg_dump_version: str
    entries: list[Entry] = field(default_factory=list)
    data_start: int = 0  # custom: where the first data block is
    int_size: int = 4
    off_size: int = 8

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version))


class _Reader:
    def __init__(self, handle: IO[bytes], size: int) -> None:
        self.handle, self.size = handle, size
        self.int_size = 4
        self.off_size = 8

    def bytes(self, n: int, part: str) -> bytes:
        if n < 0 or self.handle.tell() + n > self.size:
            raise Incomplete(f"cut off in {part} (at byte {self.handle.tell()} of {self.size})")
        return self.handle.read(n)

    def byte(self, part: str) -> int:
        return self.bytes(1, part)[0]

    def read_int(self, part: str) -> int:
        raw = self.bytes(1 + self.int_size, part)
        value = int.from_bytes(raw[1:], "little")
        return -value if raw[0] else value

    def read_str(self, part: str) -> str | None:
        length = self.read_int(part)
        if length < 0:
            return None
        return self.bytes(length, part).decode("utf-8", "replace")

    def offset(self, part: str) -> tuple[int, int]:
        raw = self.bytes(1 + self.off_size, part)
        return raw[0], int.from_bytes(raw[1:], "little")

    def skip(self, n: int, part: str) -> None:
        target = self.handle.tell() + n
        if n < 0 or target > self.size:
            raise Incomplete(f"cut off in {part} (at byte {self.handle.tell()} of {self.size})")
        self.handle.seek(target)

    def at_end(self) -> bool:
        return self.handle.tell() >= self.size


def _read_head(r: _Reader, expect: int) -> Archive:
    if r.size < len(MAGIC) or r.handle.read(len(MAGIC)) != MAGIC:
        raise Incomplete("not a pg_dump archive (no PGDMP header)" if r.size >= 5 else
                         f"cut off in the header ({r.size} bytes)")
    version = (r.byte("the header"), r.byte("the header"), r.byte("the header"))
    if not OLDEST <= version[:2] <= NEWEST:
        raise Incomplete(f"archive version {'.'.join(map(str, version))} is not one kompose "
                         f"reads (1.12 to 1.16: pg_dump 11 to 17)")
    r.int_size, r.off_size = r.byte("the header"), r.byte("the header")
    if not 1 <= r.int_size <= 8 or not 1 <= r.off_size <= 8:
        raise Incomplete(f"damaged header (int size {r.int_size}, offset size {r.off_size})")
    fmt = r.byte("the header")
    # a directory's toc.dat says 3 (measured: pg_dump 15 and 17), the number tar archives
    # also carry; pg_restore tells them apart by the folder
    if fmt != expect and not (expect == 5 and fmt == 3):
        raise Incomplete(f"a {FORMATS.get(fmt, f'format {fmt}')} archive where a "
                         f"{FORMATS[expect]} one was expected")
    if version[:2] >= (1, 15):
        code = r.byte("the header")
        if code not in COMPRESSION:
            raise Incomplete(f"damaged header (compression {code})")
        method = COMPRESSION[code]
    else:
        method = "none" if r.read_int("the header") == 0 else "gzip"
    for _ in range(7):  # creation time
        r.read_int("the header")
    names = [r.read_str("the header") or "" for _ in range(3)]
    return Archive("custom" if expect == 1 else "directory", version, method, names[0],
                   names[1], names[2], int_size=r.int_size, off_size=r.off_size)


def _read_toc(r: _Reader, archive: Archive) -> None:
    count = r.read_int("the table of contents")
    if count < 0:
        raise Incomplete(f"damaged table of contents (count {count})")
    part = "the table of contents"
    for _ in range(count):
        dump_id = r.read_int(part)
        if dump_id <= 0:
            raise Incomplete(f"damaged table of contents (entry id {dump_id})")
        r.read_int(part)  # had a data dumper
        r.read_str(part)  # table oid
        r.read_str(part)  # oid
        tag, desc = r.read_str(part) or "", r.read_str(part) or ""
        r.read_int(part)  # section
        r.read_str(part)  # definition
        r.read_str(part)  # drop
        copy = bool(r.read_str(part))
        namespace = r.read_str(part) or ""
        r.read_str(part)  # tablespace
        if archive.version[:2] >= (1, 14):
            r.read_str(part)  # table access method
        if archive.version[:2] >= (1, 16):
            r.read_int(part)  # relkind
        r.read_str(part)  # owner
        r.read_str(part)  # "false": WITH OIDS
        while r.read_str(part) is not None:  # dependencies
            pass
        entry = Entry(dump_id, desc, tag, namespace, copy=copy)
        if archive.format == "custom":
            entry.offset_flag, entry.offset = r.offset(part)
            if entry.offset_flag not in (_NOT_SET, _SET, _NO_DATA):
                raise Incomplete(f"damaged table of contents (offset flag {entry.offset_flag} "
                                 f"of {entry.name})")
        else:
            entry.filename = r.read_str(part) or ""
        archive.entries.append(entry)


def read_archive(path: Path) -> Archive:
    """Header and TOC of a custom archive or of a directory's toc.dat. Raises Incomplete."""
    directory = path.is_dir()
    toc = path / "toc.dat" if directory else path
    try:
        size = toc.stat().st_size
        with open(toc, "rb") as handle:
            r = _Reader(handle, size)
            archive = _read_head(r, 5 if directory else 1)
            _read_toc(r, archive)
            archive.data_start = handle.tell()
            if directory and not r.at_end():
                raise Incomplete(f"toc.dat has {size - handle.tell()} bytes after its table "
                                 f"of contents (damaged)")
    except FileNotFoundError:
        raise Incomplete("no toc.dat in the directory" if directory else "file missing") \
            from None
    except OSError as exc:
        raise Incomplete(f"unreadable: {exc.strerror or exc}") from None
    return archive


def _skip_chunks(r: _Reader, what: str) -> None:
    """Walk one run of chunks to its 0 length. pg_dump without compression writes a chunk
    per row (a million rows, a million chunks), so this parses lengths out of large reads
    instead of one small read per chunk."""
    handle, head = r.handle, 1 + r.int_size
    base = handle.tell()
    buf = handle.read(_WINDOW)
    pos = 0
    while True:
        if pos + head > len(buf):
            base += pos
            handle.seek(base)
            buf, pos = handle.read(_WINDOW), 0
            if len(buf) < head:
                raise Incomplete(f"cut off in the data of {what} (at byte {base} of {r.size})")
        length = int.from_bytes(buf[pos + 1:pos + head], "little")
        if buf[pos] and length:
            raise Incomplete(f"damaged data of {what} (chunk length -{length})")
        pos += head
        if length == 0:
            handle.seek(base + pos)
            return
        pos += length
        if base + pos > r.size:
            raise Incomplete(f"cut off in the data of {what} (at byte {base + pos - length} "
                             f"of {r.size})")


def _custom_blocks(path: Path, archive: Archive) -> None:
    wanted = {e.dump_id: e for e in archive.entries if e.offset_flag != _NO_DATA}
    seen: set[int] = set()
    size = path.stat().st_size
    with open(path, "rb", buffering=1 << 20) as handle:
        r = _Reader(handle, size)
        r.int_size, r.off_size = archive.int_size, archive.off_size
        handle.seek(archive.data_start)
        while not r.at_end():
            at = handle.tell()
            kind = r.byte("a data block header")
            dump_id = r.read_int("a data block header")
            entry = wanted.get(dump_id)
            if kind not in (_BLK_DATA, _BLK_BLOBS) or entry is None or dump_id in seen:
                raise Incomplete(f"damaged data at byte {at} (block type {kind}, "
                                 f"entry {dump_id})")
            if entry.offset_flag == _SET and entry.offset != at:
                raise Incomplete(f"the TOC puts {entry.name} at byte {entry.offset}, its block "
                                 f"is at {at} (damaged)")
            if kind == _BLK_DATA:
                _skip_chunks(r, entry.name)
            else:
                while (oid := r.read_int(f"the large objects of {entry.name}")) != 0:
                    _skip_chunks(r, f"large object {oid}")
            seen.add(dump_id)
    missing = [e for i, e in wanted.items() if i not in seen]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise Incomplete(f"no data for {missing[0].name}{more} (cut off after byte {size}?)")


def _data_file_reason(folder: Path, name: str, method: Method, copy: bool = False
                      ) -> str | None:
    path = folder / (name + SUFFIX[method])
    try:
        if not path.is_file():
            return f"data file {path.name} is missing"
        reason = stream_reason(path, method) if method != "none" else \
            _ends_as_copy(path) if copy else None
    except OSError as exc:
        return f"{path.name} unreadable: {exc.strerror or exc}"
    return f"data file {path.name}: {reason}" if reason else None


def _ends_as_copy(path: Path) -> str | None:
    """pg_dump 15 and 17 end every COPY data file with the end-of-data line and two blank
    lines (an empty table's file is just that)."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        handle.seek(max(0, size - len(_COPY_END) - 1))
        tail = handle.read()
    if tail == _COPY_END[1:] or tail.endswith(_COPY_END):
        return None
    return "does not end with COPY's end-of-data line (cut off?)"


def _directory_files(folder: Path, archive: Archive) -> None:
    for entry in archive.entries:
        if not entry.filename:
            continue
        if entry.filename.endswith(".toc"):  # large objects: a list, never compressed
            listing = folder / entry.filename
            try:
                lines = listing.read_bytes().splitlines(keepends=True)
            except OSError as exc:
                raise Incomplete(f"large-object list {entry.filename}: "
                                 f"{exc.strerror or exc}") from None
            for line in lines:
                parts = line.split()
                if not line.endswith(b"\n") or len(parts) != 2:
                    raise Incomplete(f"large-object list {entry.filename} is cut off or "
                                     f"damaged")
                # a large object is binary: only a compressed one can say it is whole
                name = parts[1].decode()
                reason = _data_file_reason(folder, name, archive.compression) \
                    if archive.compression != "none" else (
                        None if (folder / name).is_file() else f"data file {name} is missing")
                if reason:
                    raise Incomplete(reason)
            continue
        reason = _data_file_reason(folder, entry.filename, archive.compression, entry.copy)
        if reason:
            raise Incomplete(f"{reason} ({entry.name})")


def incomplete_reason(path: Path) -> str | None:
    """None for a complete custom archive (a file) or directory archive (a folder), else
    why not, in one line."""
    try:
        archive = read_archive(path)
        if archive.format == "custom":
            _custom_blocks(path, archive)
        else:
            _directory_files(path, archive)
    except Incomplete as exc:
        return str(exc)
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    return None


def archive_format(path: Path) -> Literal["custom", "directory", "plain"] | None:
    """What a dump is by its content: a PGDMP file, a folder with toc.dat, plain SQL, or
    None (unreadable)."""
    try:
        if path.is_dir():
            return "directory" if (path / "toc.dat").is_file() else None
        with open(path, "rb") as handle:
            head = handle.read(len(MAGIC))
    except OSError:
        return None
    return "custom" if head == MAGIC else "plain"


__all__ = ["Archive", "Entry", "Incomplete", "archive_format", "incomplete_reason",
           "read_archive"]
