"""The manifest written beside a dump (``<dump>.json``), its checksum, and the SQL that takes
exact per-table row counts at the dump's own snapshot.

Format (``"manifest": 1``; unknown keys are ignored on reading, so later versions can add):

    {"manifest": 1, "dump": "shop_20240101_000000Z.dump", "format": "custom",
     "compression": "zstd", "compressed_by": "pg_dump", "size": 123, "plain_size": null,
     "sha256": "…", "files": [], "database": "shop", "created": "2024-01-01T00:00:00Z",
     "pg_dump_version": "17.2", "server_version": "17.2", "snapshot": "00000003-0000001B-1",
     "row_counts": {"public.items": 30000}}

``compression`` is the method (read from the dump itself: an archive's header, a compressed
file's magic bytes), not its level. ``size`` is the bytes on disk (a directory: the sum of its
files); ``plain_size`` is reserved for the bytes before compression and written as null
today (read if present); ``files`` lists a directory dump's files
(``{"name", "size"}``, name order) and is empty otherwise.

``row_counts`` is null when the counts could not be taken at export (the counting session
failed, or the snapshot could not be shared with pg_dump); ``row_counts_error`` then says why.
The dump itself still counts as a dump: it is checked by restore alone.

``sha256`` of a file is of its bytes. Of a directory it is one SHA-256 over its regular files
in the byte order of their UTF-8 names (no subfolders: pg_dump writes none), feeding for each:
the name, a NUL byte, its size as 8 bytes big-endian, then its content. The name and the size
delimit every file, so moving bytes from one file to the next, renaming a file or adding an
empty one all change the digest.

Row counts: the export opens a REPEATABLE READ transaction, exports its snapshot
(``pg_export_snapshot()``), runs ``pg_dump --snapshot=<id>`` while that transaction stays
open, and counts in the same transaction: both see the same data, whatever commits meanwhile.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kompose_py.errors import StepError

VERSION = 1
FORMATS = ("plain", "custom", "directory")
CHUNK = 1 << 20

# -- the snapshot shared with pg_dump -------------------------------------------------------
# Run in this order on one connection (autocommit off): BEGIN_SNAPSHOT, ROW_SECURITY_OFF,
# EXPORT_SNAPSHOT (-> the id for pg_dump --snapshot), then TABLES and count_rows_sql(...) at
# any time before the transaction ends (after pg_dump has started, so it could import it).
BEGIN_SNAPSHOT = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"
# pg_dump runs with row_security off (and fails where a policy would hide rows): count alike
ROW_SECURITY_OFF = "SET LOCAL row_security = off"
EXPORT_SNAPSHOT = "SELECT pg_export_snapshot()"
# The tables whose rows pg_dump writes by default: ordinary tables (partitions included, the
# partitioned parents hold none), not temporary ones, not in system schemas, not members of
# an extension (pg_dump leaves their data to the extension's script).
TABLES = """
SELECT n.nspname, c.relname
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND c.relpersistence <> 't'
  AND n.nspname <> 'information_schema'
  AND n.nspname !~ '^pg_'
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                  WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                    AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2
""".strip()


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    # standard_conforming_strings is on in every supported server: only quotes double
    return "'" + text.replace("'", "''") + "'"


def table_key(schema: str, table: str) -> str:
    """The manifest's name of a table: ``schema.table`` (unquoted, as people read it); a
    name with a dot, or starting with a double quote, is quoted, so that ``"a.b".c`` and
    ``a."b.c"`` stay two tables (every other name reads as before)."""
    def part(name: str) -> str:
        return quote_ident(name) if "." in name or name.startswith('"') else name

    return f"{part(schema)}.{part(table)}"


def count_rows_sql(tables: Sequence[tuple[str, str]]) -> str | None:
    """One statement returning ``(key, count)`` per table, or None for no tables."""
    if not tables:
        return None
    return "\nUNION ALL\n".join(
        f"SELECT {quote_literal(table_key(s, t))}, count(*) FROM "
        f"{quote_ident(s)}.{quote_ident(t)}" for s, t in tables)


# -- the manifest ---------------------------------------------------------------------------
class ManifestError(StepError):
    """A manifest that cannot be read or does not fit its dump: one line."""


@dataclass(frozen=True)
class DumpFile:
    name: str
    size: int


@dataclass(frozen=True)
class Manifest:
    dump: str
    format: str
    compression: str
    size: int
    sha256: str
    database: str
    created: str  # ISO 8601 UTC, "Z"
    pg_dump_version: str
    server_version: str
    # None: unknown (the counting failed; ``row_counts_error`` says why)
    row_counts: dict[str, int] | None = field(default_factory=dict)
    compressed_by: str = "none"  # none | pg_dump | kompose
    plain_size: int | None = None
    files: tuple[DumpFile, ...] = ()
    snapshot: str | None = None
    row_counts_error: str | None = None

    def to_json(self) -> str:
        data: dict[str, Any] = {"manifest": VERSION, **asdict(self)}
        data["files"] = [asdict(f) for f in self.files]
        return json.dumps(data, indent=1, sort_keys=False) + "\n"


MAX_MANIFEST = 64 << 20  # bytes: row counts of a million tables fit well below


def manifest_path(dump: Path) -> Path:
    return dump.with_name(dump.name + ".json")


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_manifest(dump: Path, manifest: Manifest) -> Path:
    """Write ``<dump>.json`` atomically: a hidden temporary file, fsync, rename, fsync of the
    folder. Never leaves a half-written manifest under the real name."""
    target = manifest_path(dump)
    tmp = target.with_name(f".{target.name}.partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(manifest.to_json())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)
    return target


def _need(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in data:
        raise ManifestError(f"{where}: no {key!r}")
    value = data[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ManifestError(f"{where}: {key!r} is {type(value).__name__}, "
                            f"not {getattr(kind, '__name__', 'the expected type')}")
    return value


def read_manifest(path: Path) -> Manifest:
    """Parse and validate a manifest; ManifestError (one line, naming the file) otherwise."""
    where = path.name
    try:
        # Only a regular file of a sane size: a FIFO would block, /dev/zero never end.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise ManifestError(f"{where}: not a regular file")
            if info.st_size > MAX_MANIFEST:
                raise ManifestError(f"{where}: {info.st_size} bytes, more than a manifest "
                                    f"holds ({MAX_MANIFEST})")
            with os.fdopen(fd, "rb", closefd=False) as handle:
                raw = handle.read(MAX_MANIFEST + 1)
        finally:
            os.close(fd)
        data = json.loads(raw.decode("utf-8"))
    except OSError as exc:
        raise ManifestError(f"{where}: unreadable ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{where}: not JSON ({exc})".replace("\n", " ")) from None
    except RecursionError:
        raise ManifestError(f"{where}: not a manifest (JSON nested too deep)") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: not a JSON object")
    version = _need(data, "manifest", int, where)
    if version < 1:
        raise ManifestError(f"{where}: 'manifest' {version} is no manifest version")
    if version > VERSION:
        raise ManifestError(f"{where}: manifest version {version} is newer than this kompose "
                            f"reads ({VERSION})")
    fmt = _need(data, "format", str, where)
    if fmt not in FORMATS:
        raise ManifestError(f"{where}: unknown format {fmt!r}")
    sha = _need(data, "sha256", str, where)
    if not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise ManifestError(f"{where}: 'sha256' is not 64 hex digits")
    counts = _need(data, "row_counts", (dict, type(None)), where)
    for key, value in (counts or {}).items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ManifestError(f"{where}: row count of {key!r} is not a count ({value!r})")
    files = []
    for item in _need(data, "files", list, where):
        if not isinstance(item, dict):
            raise ManifestError(f"{where}: 'files' holds a {type(item).__name__}")
        files.append(DumpFile(_need(item, "name", str, where), _need(item, "size", int, where)))
    plain = data.get("plain_size")
    if plain is not None and (not isinstance(plain, int) or isinstance(plain, bool)):
        raise ManifestError(f"{where}: 'plain_size' is not a number")
    snapshot = data.get("snapshot")
    return Manifest(
        dump=_need(data, "dump", str, where), format=fmt,
        compression=_need(data, "compression", str, where),
        size=_need(data, "size", int, where), sha256=sha,
        database=_need(data, "database", str, where),
        created=_need(data, "created", str, where),
        pg_dump_version=_need(data, "pg_dump_version", str, where),
        server_version=_need(data, "server_version", str, where),
        row_counts=None if counts is None else dict(counts),
        compressed_by=str(data.get("compressed_by", "none")),
        plain_size=plain, files=tuple(files),
        snapshot=snapshot if isinstance(snapshot, str) else None,
        row_counts_error=str(data["row_counts_error"]) if data.get("row_counts_error")
        else None)


# -- checksums ------------------------------------------------------------------------------
def _feed(digest: Any, path: Path) -> int:
    size = 0
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
            size += len(block)
    return size


def directory_files(folder: Path) -> list[DumpFile]:
    """A directory dump's files, in the digest's order. Refuses anything but regular files."""
    found = []
    for entry in os.scandir(folder):
        if not entry.is_file(follow_symlinks=False):
            raise ManifestError(f"{folder.name}/{entry.name}: not a regular file "
                                f"(a directory dump holds only pg_dump's files)")
        found.append(DumpFile(entry.name, entry.stat(follow_symlinks=False).st_size))
    return sorted(found, key=lambda f: f.name.encode("utf-8", "surrogateescape"))


def digest(dump: Path) -> tuple[str, int, tuple[DumpFile, ...]]:
    """(sha256, bytes on disk, files) of a dump file or directory, read in chunks."""
    sha = hashlib.sha256()
    if not dump.is_dir():
        size = _feed(sha, dump)
        return sha.hexdigest(), size, ()
    files = directory_files(dump)
    total = 0
    for item in files:
        sha.update(item.name.encode("utf-8", "surrogateescape") + b"\0")
        sha.update(item.size.to_bytes(8, "big"))
        read = _feed(sha, dump / item.name)
        if read != item.size:
            raise ManifestError(f"{dump.name}/{item.name} changed while it was read")
        total += read
    return sha.hexdigest(), total, tuple(files)


def mismatch(dump: Path, manifest: Manifest, full: bool = True) -> str | None:
    """None when the dump is what its manifest says, else what differs (one line). Sizes
    first (cheap); the sha256 only with ``full``."""
    if dump.is_dir():
        listed = {f.name: f.size for f in manifest.files}
        actual = {f.name: f.size for f in directory_files(dump)}
        for name in sorted(listed.keys() | actual.keys()):
            if name not in actual:
                return f"{name} is missing (the manifest lists it)"
            if name not in listed:
                return f"{name} is not in the manifest"
            if listed[name] != actual[name]:
                return f"{name} is {actual[name]} bytes, the manifest says {listed[name]}"
    else:
        size = dump.stat().st_size
        if size != manifest.size:
            return f"{size} bytes, the manifest says {manifest.size}"
    if full:
        sha, _, _ = digest(dump)
        if sha != manifest.sha256:
            return f"sha256 {sha[:12]}… differs from the manifest's {manifest.sha256[:12]}…"
    return None


def check_manifest(dump: Path, full: bool = True) -> tuple[Manifest | None, str | None, str]:
    """Before a dump is used: (its manifest or None, why it must not be used or None (a
    phrase about the dump, without its name), a line to say). No manifest is not a
    refusal. ``full``: the sha256 too; without it only the sizes are compared (no dump is
    read: cheap enough to ask of every dump in a folder)."""
    path = manifest_path(dump)
    if not path.exists():
        return None, None, (f"no manifest beside {dump.name} (a dump of kompose.sh or of an "
                            f"older kompose): its checksum cannot be checked")
    try:
        manifest = read_manifest(path)
        if manifest.dump != dump.name:
            return manifest, f"its manifest {path.name} describes {manifest.dump}", ""
        from kompose_py.db.postgres.formats import format_of

        kind = format_of(dump).kind
        if manifest.format != kind:
            return manifest, (f"its manifest {path.name} describes a {manifest.format} dump; "
                              f"this is a {kind} one"), ""
        differs = mismatch(dump, manifest, full)
    except ManifestError as exc:
        return None, f"its manifest cannot be used: {exc.message}", ""
    except OSError as exc:
        return None, f"unreadable ({exc.strerror or exc})", ""
    if differs is not None:
        return manifest, f"does not match its manifest: {differs}", ""
    return manifest, None, f"{dump.name} matches its manifest (sha256 {manifest.sha256[:12]}…)"


def count_differences(expected: Mapping[str, int], actual: Mapping[str, int]
                      ) -> list[str]:
    """Per table, how the restored counts differ from the manifest's: lines for a report."""
    lines = []
    for key in sorted(expected.keys() | actual.keys()):
        want, got = expected.get(key), actual.get(key)
        if want is None:
            lines.append(f"{key}: {got} rows restored, not in the manifest")
        elif got is None:
            lines.append(f"{key}: missing after the restore (the dump had {want} rows)")
        elif want != got:
            lines.append(f"{key}: {got} rows restored, the dump had {want}")
    return lines


def counts_from_rows(rows: Iterable[Sequence[Any]]) -> dict[str, int]:
    """The rows of :func:`count_rows_sql` as the manifest's mapping."""
    return {str(key): int(count) for key, count in rows}
