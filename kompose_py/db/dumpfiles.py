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

Where: the stack folder, or ``<DB_DUMP_DIR>/<stack>/`` when ``DB_DUMP_DIR`` is set (another
disk, a mounted share; a relative path is relative to the kompose root). kompose creates the
per-stack folder but never ``DB_DUMP_DIR`` itself: a missing one is most often a share that is
not mounted, and dumps written to the empty mount point would fill the very disk they were
meant to leave. Everything that reads or writes dumps asks :func:`dump_folder`; the lock and
the import journal stay in the stack folder.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from kompose_py.db.postgres.formats import SUFFIX_PATTERN, DumpFormat, format_of
from kompose_py.errors import StepError
from kompose_py.files import fsync_dir, owner_gone, owner_tag
from kompose_py.stacks import Stack

DUMP_DIR = "DB_DUMP_DIR"

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
        # Old names are local time: astimezone() on a naive time reads it in the local zone
        # (which cannot place a time at the very ends of the calendar: no dump's name).
        aware = stamp.replace(tzinfo=timezone.utc) if match["utc"] else stamp.astimezone()
        aware.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        return None
    return Dump(aware, int(match["n"] or 1), path)


def find_dumps(folder: Path, db_name: str) -> list[Dump]:
    """This database's dump files in ``folder``, complete or not, oldest first."""
    found: list[Dump] = []
    if not folder.is_dir():
        return found  # a per-stack folder that no export has made yet: no dumps
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
    return [d for d in find_dumps(folder, db_name) if dump_problem(d.path) is None]


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


@dataclass(frozen=True)
class Problem:
    """Why a dump cannot be counted on: ``damaged`` when its manifest says other bytes (or
    cannot be read: the import would refuse it), else it is not complete by its format."""

    text: str
    damaged: bool


def dump_problem(path: Path) -> Problem | None:
    """Why a dump cannot be counted on, or None: its manifest says other sizes or cannot be
    read, or it is not complete by its format. What the newest dump, cleanup and db:list go
    by: a damaged dump is never the one kept while good ones are deleted. The sha256 is left
    to the import and db:verify, which read the whole dump anyway."""
    from kompose_py.db.manifest import check_manifest

    _, refusal, _ = check_manifest(path, full=False)
    if refusal is not None:
        return Problem(refusal, damaged=True)
    reason = incomplete_reason(path)
    return None if reason is None else Problem(reason, damaged=False)


def dump_size(path: Path) -> int:
    """Bytes of a dump file, or of every file of a directory archive."""
    try:
        if path.is_dir() and not path.is_symlink():
            return sum(entry.stat(follow_symlinks=False).st_size
                       for entry in os.scandir(path) if entry.is_file(follow_symlinks=False))
        return os.stat(path).st_size
    except OSError:
        return 0


# -- where a stack's dumps live ------------------------------------------------------------
def dump_dir_setting(values: Mapping[str, str], root: Path) -> Path | None:
    """``DB_DUMP_DIR`` as a folder (relative to the root), or None when it is not set."""
    given = values.get(DUMP_DIR, "").strip()
    if not given:
        return None
    # Lexically normal (no "..", no symlink resolved): the path the user wrote, made whole.
    return Path(os.path.normpath(root / given))


def dump_folder(stack: Stack, values: Mapping[str, str]) -> Path:
    """The folder of the stack's dumps: ``<DB_DUMP_DIR>/<stack>`` or the stack folder. Pure:
    whether it exists is :func:`dump_dir_problem`'s question. The root is the folder that
    holds the stack folders."""
    base = dump_dir_setting(values, stack.path.parent)
    return stack.path if base is None else base / stack.name


def dump_dir_problem(stack: Stack, values: Mapping[str, str]) -> str | None:
    """One line when ``DB_DUMP_DIR`` is set but is not a folder that exists, or when the
    stack's folder in it is something else than a folder (a file, a dangling symlink), else
    None."""
    base = dump_dir_setting(values, stack.path.parent)
    if base is None:
        return None
    if not base.is_dir():
        what = "is not a folder" if base.exists() else "does not exist"
        return (f"{DUMP_DIR} {base} {what} (a share that is not mounted?); kompose creates "
                f"{base / stack.name} in it but never {DUMP_DIR} itself")
    own = base / stack.name
    if os.path.lexists(own) and not own.is_dir():
        what = "a symlink to nothing" if own.is_symlink() and not own.exists() \
            else "not a folder"
        return (f"the dump folder {own} is {what} (a share that is not mounted?); "
                f"kompose reads and writes {stack.name}'s dumps only in a folder there")
    return None


def readable_dump_folder(stack: Stack, values: Mapping[str, str]) -> Path:
    """The folder to choose or count dumps in; a missing ``DB_DUMP_DIR`` is a StepError (no
    dump found there must not read as "there are none")."""
    problem = dump_dir_problem(stack, values)
    if problem is not None:
        raise StepError(problem)
    return dump_folder(stack, values)


def export_folder(stack: Stack, values: Mapping[str, str], dry_run: bool,
                  warn: Callable[[str], None]) -> Path:
    """The folder a new dump (and its hidden partial file) goes to, made (0700) when it is
    missing. A missing ``DB_DUMP_DIR`` is a StepError before pg_dump runs; a dry-run creates
    nothing and only warns (a pre hook of the real run may mount the share)."""
    problem = dump_dir_problem(stack, values)
    folder = dump_folder(stack, values)
    if problem is not None:
        if not dry_run:
            raise StepError(problem)
        warn(problem)
    elif not dry_run and folder != stack.path:
        try:
            folder.mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise StepError(f"cannot create the dump folder {folder}: "
                            f"{exc.strerror or exc}") from None
    return folder


# -- removing a dump -----------------------------------------------------------------------
_DELETING = ".deleting"


def remove_dump(path: Path) -> None:
    """Delete one dump, a file or a directory dump's tree, and its manifest when there is
    one. A directory is first renamed to a hidden name, so that a delete cut short never
    leaves a dump-named folder with files missing (which would read as an incomplete dump,
    never deleted again); :func:`sweep_leftovers` finishes such a delete. Raises OSError."""
    if path.is_dir() and not path.is_symlink():
        hidden = path.with_name(f".{path.name}.{os.getpid()}{_DELETING}")
        os.rename(path, hidden)
        shutil.rmtree(hidden)
    else:
        path.unlink(missing_ok=True)
    # After the dump: a manifest without its dump is harmless, a dump without its manifest
    # would lose its checksum. (Imported here: hashlib is no start-up cost of every command.)
    from kompose_py.db.manifest import manifest_path

    manifest_path(path).unlink(missing_ok=True)
    fsync_dir(path.parent)


_PARTIAL = ".partial"


def partial_name(final_name: str) -> str:
    """The hidden name a dump is written under until it is complete: ``.<name>.<host>-<pid>
    .partial``, naming the process that writes it, so that what a killed kompose of this host
    left can be told from an export still running (maybe on another host sharing
    DB_DUMP_DIR)."""
    return f".{final_name}.{owner_tag()}{_PARTIAL}"


def _writer_is_gone(name: str) -> bool:
    """Whether the partial dump ``name`` was written by a process of this host that no longer
    runs (an older name without the host, or a live or unknown pid: not known to be gone)."""
    return owner_gone(name[:-len(_PARTIAL)].rsplit(".", 1)[-1])


def sweep_leftovers(folder: Path, db_name: str, remove: bool = True) -> list[tuple[str, str]]:
    """What a cut-short cleanup or a killed export left in ``folder`` (call under the stack's
    lock): hidden ``.deleting`` trees of a directory dump, manifests of this database's dumps
    whose dump is gone, and partial dumps whose writer on this host no longer runs. Returns
    (name, what left it), each removed unless ``remove`` is false (a dry-run)."""
    removed: list[tuple[str, str]] = []
    if not folder.is_dir():
        return removed
    def ours(name: str, suffix: str) -> bool:
        """``.<dump name>.<writer>.<suffix>`` of a dump of this database (not of
        ``<db>_old``, whose names start alike)."""
        if not (name.startswith(".") and name.endswith(suffix)):
            return False
        inner = name[1:-len(suffix)].rsplit(".", 1)[0]
        return parse_dump_name(folder / inner, db_name) is not None

    for path in folder.iterdir():
        name = path.name
        tree = path.is_dir() and not path.is_symlink()
        if ours(name, _DELETING) and tree:
            # Only remove_dump makes these names: .<dump name>.<pid>.deleting
            pid = name[:-len(_DELETING)].rsplit(".", 1)[-1]
            if pid.isdigit():
                if remove:
                    shutil.rmtree(path, ignore_errors=True)
                removed.append((name, "left by a cleanup that was cut short"))
        elif ours(name, _PARTIAL) and _writer_is_gone(name):
            if remove:
                if tree:
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
            removed.append((name, "a partial dump left by a kompose that was killed"))
        elif name.endswith(".json") and path.is_file():
            dump = folder / name.removesuffix(".json")
            if parse_dump_name(dump, db_name) is not None and not os.path.lexists(dump):
                if remove:
                    path.unlink(missing_ok=True)
                removed.append((name, "left by a cleanup that was cut short"))
    return removed


def chosen_dump(given: Path | None, stack: Stack, values: Mapping[str, str], db_name: str
                ) -> tuple[Path, list[str]]:
    """The dump a command works on: ``given`` (FILE) as it is, else :func:`newest_complete`
    (StepError when there is none)."""
    return (given, []) if given is not None else newest_complete(stack, values, db_name)


def newest_complete(stack: Stack, values: Mapping[str, str], db_name: str
                    ) -> tuple[Path, list[str]]:
    """The newest complete dump of the stack's database (in DB_DUMP_DIR's folder when set),
    and one line for each newer file that is not a complete dump (passed over: said, not
    silent). StepError when there is none, or the folder cannot be read."""
    folder = readable_dump_folder(stack, values)
    found = find_dumps(folder, db_name)
    # Newest first, each dump checked once, none older than the one chosen (a check inflates
    # a compressed dump).
    newer: list[tuple[Path, str]] = []
    for dump in reversed(found):
        problem = dump_problem(dump.path)
        if problem is None:
            return dump.path, [f"skipped {path.name}, newer than {dump.path.name}: {why}"
                               for path, why in reversed(newer)]
        newer.append((dump.path, problem.text))
    raise StepError(f"no complete dump of {db_name} in {folder}"
                    + (f" ({len(found)} incomplete, see db:list)" if found else ""))
