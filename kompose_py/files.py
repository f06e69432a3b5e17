"""Files kompose writes or must trust: a regular file's check, a new private (0600) file that
never follows a symlink, and fsync of a folder so that a rename survives a power loss."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import IO

from kompose_py.errors import ConfigError


def regular_file(path: Path, what: str) -> os.stat_result:
    """The status of a file that must be a regular one: a link to nothing, a path that cannot
    be read or anything else there is a configuration error naming it."""
    try:
        info = path.stat()
    except FileNotFoundError:
        try:
            raise ConfigError(f"{path}: a link to nothing ({os.readlink(path)!r})") from None
        except OSError:
            raise ConfigError(f"{path}: missing") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{path}: is {file_kind(info.st_mode)}, not {what}")
    return info


def file_kind(mode: int) -> str:
    """What is there instead of a regular file, in words."""
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"



def new_private_file(path: Path) -> IO[bytes]:
    """A new file only this user can read (a dump holds a whole database), never through a
    symlink someone left at that name."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    return os.fdopen(fd, "wb")



def fsync_dir(folder: Path) -> None:
    """Make a rename or an unlink in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def process_gone(pid: int) -> bool:
    """Whether no process of this host has ``pid`` (what a killed kompose left behind is
    then safe to remove). A live one, another user's included, is not gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def owner_tag() -> str:
    """``<host>-<pid>`` of this process, for names of what it leaves while it works (partial
    dumps, temporary folders in a container), so that what a killed kompose left can be told
    from what another one, maybe on another host, is still using (:func:`owner_gone`)."""
    import socket

    host = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname()) or "host"
    return f"{host}-{os.getpid()}"


def owner_gone(tag: str) -> bool:
    """Whether ``tag`` (an :func:`owner_tag`) names a process of this host that no longer
    runs (another host's, or a live or unknown pid: not known to be gone)."""
    host, sep, pid = tag.rpartition("-")
    return bool(sep) and host == owner_tag().rpartition("-")[0] and pid.isdigit() \
        and process_gone(int(pid))
