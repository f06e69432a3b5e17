"""Dump file names: ``<DB_NAME>_<YYYYMMDD_HHMMSS>[_N].sql[.gz]`` in the stack folder.

Ordering is by the timestamp in the name (then the same-second counter), never by mtime:
a copied or touched file must not become "the latest". Temporary files of an export in
progress are hidden (``.<name>.partial``) and never match.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

_DUMP = re.compile(r"(?P<db>.+)_(?P<ts>\d{8}_\d{6})(?:_(?P<n>\d+))?\.sql(?P<gz>\.gz)?")


@dataclass(frozen=True, order=True)
class Dump:
    timestamp: datetime
    counter: int
    path: Path


def parse_dump_name(path: Path, db_name: str) -> Dump | None:
    match = _DUMP.fullmatch(path.name)
    if match is None or match["db"] != db_name:
        return None
    try:
        stamp = datetime.strptime(match["ts"], "%Y%m%d_%H%M%S")
    except ValueError:
        return None
    return Dump(stamp, int(match["n"] or 1), path)


def find_dumps(folder: Path, db_name: str) -> list[Dump]:
    """This database's dumps in ``folder``, oldest first."""
    found = []
    for path in folder.iterdir():
        if path.name.startswith("."):
            continue
        dump = parse_dump_name(path, db_name)
        if dump is not None and path.is_file():
            found.append(dump)
    found.sort()
    return found


def dump_name(db_name: str, when: datetime, counter: int, compressed: bool) -> str:
    suffix = f"_{counter}" if counter > 1 else ""
    return f"{db_name}_{when:%Y%m%d_%H%M%S}{suffix}.sql{'.gz' if compressed else ''}"
