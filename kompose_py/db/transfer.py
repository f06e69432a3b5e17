"""Moving dumps in and out of a database's container, and publishing a directory archive.

A custom archive and a plain dump stream through ``docker exec`` on stdout/stdin. A directory
archive cannot (pg_dump -Fd writes a folder, pg_restore -j N needs a seekable file or a
folder), so it goes through a private temporary folder in the container (``mktemp -d``, mode
0700, made by the exec user that runs pg_dump/pg_restore): tar over ``docker exec`` both ways
(POSIX tar is in every PostgreSQL image; unlike ``docker cp`` the files belong to the exec
user, and the stream is read here member by member, so nothing but plain files of one flat
folder is ever written on the host). The folder is removed whatever happens: in a ``finally``,
and by a second signal's immediate end (the supervisor runs the removal).

A directory archive on the host is written as a hidden partial folder, checked, every file and
the folder fsynced, then given its name by one ``renameat2(RENAME_NOREPLACE)`` (Linux 3.15+,
glibc 2.28+, through ctypes): a plain ``rename`` onto a name that exists as an empty folder
would replace it. Where the file system or libc lacks it (EINVAL/ENOSYS), the name is first
claimed with ``mkdir`` (which never replaces anything, under the stack's lock) and the partial
folder renamed onto that claim (the only folder rename may replace is the empty one this
export just made).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import tarfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import IO

from kompose_py.db.reach import AccessKind, ContainerAccess
from kompose_py.errors import StepError
from kompose_py.files import fsync_dir, new_private_file, owner_gone, owner_tag
from kompose_py.lifecycle import StackRun
from kompose_py.runner.command import Command, failure_line

_VERSION = re.compile(r"\b(\d+)(?:\.\d+)*")
_versions: dict[tuple[str, ...], int | None] = {}
RENAME_NOREPLACE = 1
_AT_FDCWD = -100


def _quiet_env(access: ContainerAccess, env: dict[str, str]) -> dict[str, str]:
    """The docker client's environment: the stack's (DOCKER_HOST …) without its secrets."""
    from kompose_py.masking import is_secret_key

    return {k: v for k, v in access.env(env).items() if not is_secret_key(k)}


def docker(access: ContainerAccess, run: StackRun, args: Sequence[str],
           timeout: float | None = 120) -> Command:
    return Command(("docker", *args), run.stack.path, _quiet_env(access, run.env),
                   stdin="null", stdout="capture", capture_stderr=True, echo_stderr=False,
                   timeout=timeout)


def pg_dump_major(run: StackRun, access: AccessKind) -> int | None:
    """The major version of the pg_dump that runs for ``access`` (asked once per run and
    place; None when it cannot be told)."""
    if isinstance(access, ContainerAccess):
        key: tuple[str, ...] = ("container", access.container, access.engine)
        cmd = docker(access, run, ("exec", access.container, "pg_dump", "--version"), 60)
    else:
        key = ("host",)
        cmd = Command(("pg_dump", "--version"), run.stack.path, dict(run.env), stdin="null",
                      stdout="capture", capture_stderr=True, echo_stderr=False, timeout=60)
    if key not in _versions:
        outcome = run.ctx.queries.run(cmd)
        found = _VERSION.search(outcome.stdout.decode(errors="replace").partition(")")[2]) \
            if outcome.ok else None
        _versions[key] = int(found[1]) if found else None
    return _versions[key]


_TEMP = re.compile(r"/tmp/kompose\.([A-Za-z0-9_]+-\d+)\.[A-Za-z0-9]+")


@contextlib.contextmanager
def container_folder(run: StackRun, access: ContainerAccess) -> Iterator[str]:
    """A private temporary folder in the container, removed afterwards whatever happens.
    Its name carries this host and pid (``/tmp/kompose.<host>-<pid>.XXXXXXXX``): the folders
    a SIGKILLed kompose of this host left in the container (nothing could remove them) are
    removed with this one, and said. Listing them costs no extra ``docker exec``."""
    if run.ctx.dry_run:
        run.note(f"would use a private temporary folder in container {access.container} "
                 f"(removed afterwards)")
        yield "/tmp/kompose.XXXXXXXX"
        return
    # Shielded: a signal that killed the docker client while mktemp had made the folder
    # would leave it there, unnamed. The folders there already come first, one per line.
    made = run.ctx.runner.run(replace(docker(access, run, (
        "exec", access.container, "sh", "-c",
        'for f in /tmp/kompose.*-*.*; do [ -d "$f" ] && echo "$f"; done; '
        f'mktemp -d "/tmp/kompose.{owner_tag()}.XXXXXXXX"')), shielded=True))
    lines = made.stdout.decode(errors="replace").split()
    folder = lines[-1] if lines else ""
    if not made.ok or not folder.startswith("/tmp/kompose."):
        raise StepError(f"cannot make a temporary folder in container {access.container}: "
                        + failure_line(made.stderr_tail, made.error or "mktemp failed",
                                       strip_marker=True))
    stale = [f for f in lines[:-1] if (m := _TEMP.fullmatch(f)) and owner_gone(m[1])]
    for left in stale:
        run.note(f"removing {left} in container {access.container}, left by a kompose that "
                 f"was killed")
    remove = replace(docker(access, run, ("exec", access.container, "rm", "-rf", "--",
                                          folder, *stale), 60), shielded=True)
    if run.interrupted():  # stopped meanwhile: nothing is started in that folder
        run.ctx.runner.run(remove)
        raise StepError("interrupted before the dump started")
    try:
        with run.ctx.runner.supervisor.remote_temporary(remove):
            yield folder
    finally:
        gone = run.ctx.runner.run(remove)
        if not gone.ok:
            run.warn(f"could not remove {folder} in container {access.container}: "
                     + failure_line(gone.stderr_tail, gone.error or "rm failed",
                                    strip_marker=True))


def tar_in(access: ContainerAccess, run: StackRun, local: Path, folder: str,
           name: str) -> Command:
    """Copy ``local`` (a file or a flat folder) to ``folder/name`` in the container."""
    cmd = docker(access, run, ("exec", "-i", access.container, "tar", "-x", "-f", "-", "-C",
                               folder), None)

    def feed(sink: IO[bytes]) -> None:
        with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            if local.is_dir():
                tar.add(str(local), arcname=name, recursive=False)
                for entry in sorted(local.iterdir()):
                    tar.add(str(entry), arcname=f"{name}/{entry.name}", recursive=False)
            else:
                tar.add(str(local), arcname=name)

    return replace(cmd, stdin="inherit", stdout="null", feeder=feed)


def tar_out(access: ContainerAccess, run: StackRun, folder: str, into: Path) -> Command:
    """Copy the flat folder ``folder`` of the container into the new folder ``into``: plain
    files only, each written 0600 and fsynced as it lands."""
    cmd = docker(access, run, ("exec", access.container, "tar", "-c", "-f", "-", "-C", folder,
                               "."), None)

    def drain(source: IO[bytes]) -> None:
        os.mkdir(into, 0o700)
        with tarfile.open(fileobj=source, mode="r|") as tar:
            for member in tar:
                name = member.name[2:] if member.name.startswith("./") else member.name
                if member.isdir() and name in ("", "."):
                    continue
                if not member.isfile() or not name or "/" in name or name.startswith("."):
                    raise ValueError(f"unexpected entry {member.name!r} in the dump folder")
                data = tar.extractfile(member)
                assert data is not None  # a regular file
                with new_private_file(into / name) as out:
                    while chunk := data.read(1 << 20):
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())

    return replace(cmd, stdout="inherit", drain=drain)


def fsync_tree(folder: Path) -> None:
    """Every file of a flat folder, then the folder itself."""
    for entry in os.scandir(folder):
        if entry.is_file(follow_symlinks=False):
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    fsync_dir(folder)


def _renameat2() -> Callable[..., int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                         ctypes.c_uint)
    function.restype = ctypes.c_int
    return function


def rename_noreplace(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target``; FileExistsError when ``target`` exists, whatever it
    is (an empty folder included)."""
    function = _renameat2()
    if function is not None:
        if function(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target),
                    RENAME_NOREPLACE) == 0:
            return
        code = ctypes.get_errno()
        if code == errno.EEXIST:
            raise FileExistsError(code, os.strerror(code), str(target))
        if code not in (errno.EINVAL, errno.ENOSYS):
            raise OSError(code, os.strerror(code), str(target))
    # The claim: mkdir never replaces; the rename then replaces only this empty claim.
    os.mkdir(target, 0o700)
    try:
        os.rename(source, target)
    except OSError:
        with contextlib.suppress(OSError):
            os.rmdir(target)
        raise
