"""What an import has in flight, in ``<stack>/.kompose-import.json``, so that a kompose killed
half-way is put right by the next command for that stack (recovery.py)."""

from __future__ import annotations

import contextlib
import json
import os
from datetime import datetime, timezone
from typing import Any

from kompose_py.errors import StepError
from kompose_py.files import fsync_dir, new_private_file
from kompose_py.stacks import Stack

JOURNAL_NAME = ".kompose-import.json"


# -- the swap and its journal ----------------------------------------------------------------
class Journal:
    """What an import has in flight, in ``<stack>/.kompose-import.json``: the names and the
    step it reached, written (and fsynced) before each step, removed when the import is
    over. A kompose killed half-way leaves it for :func:`recover`."""

    def __init__(self, stack: Stack, dry_run: bool = False) -> None:
        self.path = stack.path / JOURNAL_NAME
        self.dry_run = dry_run
        self.data: dict[str, Any] = {}
        self.pending = False  # something is left for the next command to finish

    def write(self, **changes: Any) -> None:
        self.data.update(changes)
        if self.dry_run:
            return
        self.data.setdefault("pid", os.getpid())
        self.data.setdefault("started", datetime.now(timezone.utc).isoformat(timespec="seconds"))
        tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
        with new_private_file(tmp) as handle:
            handle.write(json.dumps(self.data).encode() + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        fsync_dir(self.path.parent)

    def clear(self) -> None:
        if self.dry_run:
            return
        self.path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            fsync_dir(self.path.parent)

    @staticmethod
    def read(stack: Stack) -> dict[str, Any] | None:
        path = stack.path / JOURNAL_NAME
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StepError(f"cannot read {path}: {exc.strerror or exc}") from None
        with os.fdopen(fd, "rb") as handle:
            try:
                data = json.loads(handle.read(65536))
            except ValueError:
                raise StepError(f"{path} is not a kompose import journal",
                                hint="look at it, then remove it") from None
        if not isinstance(data, dict) or not {"target", "scratch", "aside", "phase"} <= set(data):
            raise StepError(f"{path} is not a kompose import journal",
                            hint="look at it, then remove it")
        return data

