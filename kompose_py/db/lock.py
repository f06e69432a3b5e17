"""One export, import, cleanup or recovery per stack at a time: an flock on a hidden file in
the stack folder, released by the kernel when its holder dies. When the stack's dumps live in
a folder of their own (``DB_DUMP_DIR``, maybe a share that other hosts or kompose roots use
too), the commands that read or write dumps also hold the same lock in that folder, so that
one root's cleanup cannot delete what another root's export or import is using."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import stat
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path

from kompose_py.errors import StepError
from kompose_py.lifecycle import RunContext
from kompose_py.results import StackResult
from kompose_py.stacks import Stack

LOCK_NAME = ".kompose.lock"


_LOCK_RECORD = 256  # the holder line, padded: rewritten in place, never truncated


# -- the lock -----------------------------------------------------------------------------
@contextlib.contextmanager
def stack_lock(stack: Stack, command: str, folder: Path | None = None) -> Iterator[None]:
    """One export/import/cleanup per stack at a time; the second fails at once naming the
    holder. ``folder``: where the lock file is (the stack folder by default).

    An flock on a hidden file in the stack folder: the kernel releases it when the holder
    dies, so a crashed kompose never leaves a stale lock behind. The file is opened without
    following a symlink and is never truncated (a link there must not clobber its target);
    anything but a plain file of our own there is a clear error.
    """
    path = (folder or stack.path) / LOCK_NAME
    flags = os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        try:
            fd = os.open(path, os.O_RDWR | flags, 0o600)
        except OSError as exc:
            if exc.errno not in (errno.EROFS, errno.EACCES) or not path.exists():
                raise
            fd = os.open(path, os.O_RDONLY | flags)  # a read-only folder still locks
    except OSError as exc:
        what = "is a symlink" if exc.errno == errno.ELOOP else \
            "is a folder" if exc.errno == errno.EISDIR else (exc.strerror or str(exc))
        raise StepError(f"cannot use the lock file {path}: {what}",
                        hint="remove what is there; kompose creates the file itself") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            raise StepError(f"cannot use the lock file {path}: not a plain file of its own",
                            hint="remove what is there; kompose creates the file itself")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, _LOCK_RECORD, 0).decode(errors="replace").strip()
            where = "" if folder is None else f" (its dump folder {folder} is in use)"
            raise StepError(f"{stack.name} is busy{where}: {holder or 'another process'}",
                            hint=f"wait for it; the lock ({path}) ends with that process, "
                                 f"there is nothing to remove") from None
        since = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        _write_record(fd, f"kompose {command} (pid {os.getpid()} on {socket.gethostname()}, "
                          f"since {since}, for {stack.path})")
        try:
            yield
        finally:
            _write_record(fd, "")
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _dump_folder_lock(stack: Stack, command: str, values: Mapping[str, str] | None
                      ) -> contextlib.AbstractContextManager[None]:
    """The lock in the stack's own dump folder (DB_DUMP_DIR's ``<stack>`` folder), when it is
    not the stack folder and exists; else nothing to hold. A folder where no lock file can be
    made (a read-only share holding no lock file) is read without one: there, nothing can
    delete or write dumps either."""
    from kompose_py.db.dumpfiles import dump_folder

    folder = dump_folder(stack, values) if values is not None else stack.path
    if folder == stack.path or not folder.is_dir() or folder.is_symlink():
        return contextlib.nullcontext()
    if not os.access(folder, os.W_OK) and not (folder / LOCK_NAME).exists():
        return contextlib.nullcontext()
    return stack_lock(stack, command, folder)


def _write_record(fd: int, text: str) -> None:
    record = text.encode()[:_LOCK_RECORD - 1].ljust(_LOCK_RECORD - 1) + b"\n"
    with contextlib.suppress(OSError):  # a read-only lock file: the flock alone protects
        os.pwrite(fd, record, 0)


def locked(ctx: RunContext, stack: Stack, command: str,
           body: Callable[[], StackResult], values: Mapping[str, str] | None = None
           ) -> StackResult:
    """``body()`` under the stack's lock, and under the lock of its dump folder too when
    ``values`` (the stack's variables) put its dumps in a folder of their own."""
    if ctx.dry_run:
        return body()  # a dry-run writes nothing, not even a lock file
    try:
        with stack_lock(stack, command), _dump_folder_lock(stack, command, values):
            return body()
    except StepError as exc:
        # Nothing of the stack ran: no hook, no command (failed_step "").
        return StackResult(stack.name, "failed", exit_code=1,
                           message=exc.message + (f" ({exc.hint})" if exc.hint else ""))

