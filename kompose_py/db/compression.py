"""Compression of dumps: the ``--compress`` value, streaming writers, and whether a
compressed file is whole.

pg_dump 16+ compresses with gzip, lz4 or zstd itself (``--compress=zstd:5``); older pg_dump
only has gzip. When the pg_dump that runs cannot do the method asked for, kompose compresses a
plain dump itself as it streams out of pg_dump, in chunks (memory stays at a few MB whatever
the dump's size). Libraries: ``zstandard`` (python-zstandard: bindings to the reference
libzstd, ships type hints, wheels for CPython 3.9 to 3.14; its stream writer keeps little
more than libzstd's window: +5 MiB peak measured for 256 MiB) and ``lz4`` (python-lz4:
bindings to the reference liblz4 frame API, wheels for 3.9 to 3.13; +2 MiB). From Python 3.14
on the standard library's ``compression.zstd`` could stand in for the first. Both are
imported only when a zstd or lz4 stream is written or decompressed, so the rest of kompose
and the completeness checks here need neither.

Whole: the checks read the stream's own framing, never a length kompose wrote beside it.
zstd and lz4 frames carry a size for every block and an explicit end (zstd's last-block flag,
lz4's end mark), so a cut file is found by walking block headers with seeks; gzip has no block
sizes, so it is inflated to its end (constant memory).
"""

from __future__ import annotations

import gzip
import os
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from kompose_py.errors import UsageError

Method = Literal["none", "gzip", "lz4", "zstd"]
METHODS: tuple[Method, ...] = ("none", "gzip", "lz4", "zstd")
SUFFIX: dict[Method, str] = {"none": "", "gzip": ".gz", "lz4": ".lz4", "zstd": ".zst"}
# Levels pg_dump accepts (zstd's negative "fast" levels left out: rarely wanted for backups).
LEVELS: dict[Method, tuple[int, int, int]] = {  # low, high, default
    "gzip": (1, 9, 6), "lz4": (1, 12, 1), "zstd": (1, 22, 3)}
CHUNK = 1 << 20
_ZSTD_MAGIC = 0xFD2FB528
_LZ4_MAGIC = 0x184D2204
_SKIPPABLE = range(0x184D2A50, 0x184D2A60)


@dataclass(frozen=True)
class Compression:
    method: Method
    level: int | None = None  # None: the method's default

    def __str__(self) -> str:
        return self.method if self.level is None else f"{self.method}:{self.level}"

    @property
    def suffix(self) -> str:
        return SUFFIX[self.method]

    def pg_dump_option(self, major: int) -> str:
        """The option for pg_dump ``major``: 16+ takes ``method[:level]``; 15 and older
        only a gzip level (``--compress=gzip`` there is "invalid value")."""
        if major >= 16:
            return f"--compress={self}"
        if self.method == "none":
            return "--compress=0"
        if self.method != "gzip":
            raise ValueError(f"pg_dump {major} cannot compress with {self.method}")
        return f"--compress={self.level if self.level is not None else LEVELS['gzip'][2]}"

    def pg_dump_can(self, major: int) -> bool:
        """Whether pg_dump ``major`` writes this itself (lz4/zstd came with 16)."""
        return self.method in ("none", "gzip") or major >= 16


def parse_compress(text: str, name: str = "--compress") -> Compression:
    """``gzip``, ``lz4:5``, ``zstd:level=19`` (pg_dump's spelling), ``none``, or a bare level
    (``0`` none, ``1`` to ``9`` gzip, as pg_dump's ``-Z N``). One-line UsageError otherwise."""
    value = text.strip().lower()
    if re.fullmatch(r"[0-9]+", value):  # (\d would take any script's digits)
        level = int(value)
        if level == 0:
            return Compression("none")
        if level > 9:
            raise UsageError(f"{name} {text}: a bare level is gzip's, 1 to 9 (or 0 for none); "
                             f"for more say zstd:{level}")
        return Compression("gzip", level)
    method, colon, detail = value.partition(":")
    if method not in METHODS:
        raise UsageError(f"{name} {text!r}: unknown method {method!r} "
                         f"(one of gzip, lz4, zstd, none, optionally :LEVEL)")
    if not colon:
        return Compression(method)
    if method == "none":
        raise UsageError(f"{name} {text!r}: none takes no level")
    match = re.fullmatch(r"(?:level=)?(-?[0-9]+)", detail)
    if match is None:
        raise UsageError(f"{name} {text!r}: expected {method}:LEVEL, a whole number")
    level = int(match[1])
    low, high, _ = LEVELS[method]
    if not low <= level <= high:
        raise UsageError(f"{name} {text!r}: {method} levels are {low} to {high}")
    return Compression(method, level)


def method_of(path: Path) -> Method:
    """The method a dump's name says (``.sql.zst`` → zstd)."""
    for method, suffix in SUFFIX.items():
        if suffix and path.name.endswith(suffix):
            return method
    return "none"


class CompressingWriter:
    """Write plain bytes in, compressed bytes go to ``sink`` as they are produced.
    ``close()`` ends the stream (the sink stays open: the caller fsyncs and renames)."""

    def __init__(self, sink: IO[bytes], spec: Compression) -> None:
        self.sink = sink
        self.spec = spec
        self.written = 0  # plain bytes taken
        self._closed = False
        level = spec.level if spec.level is not None else LEVELS.get(spec.method, (0, 0, 0))[2]
        self._obj: Any = None
        if spec.method == "gzip":
            # mtime=0: the same dump compresses to the same bytes (a stable sha256)
            self._obj = gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=level, mtime=0)
        elif spec.method == "zstd":
            import zstandard

            self._obj = zstandard.ZstdCompressor(level=level, write_checksum=True).stream_writer(
                sink, closefd=False)
        elif spec.method == "lz4":
            import lz4.frame

            self._obj = lz4.frame.LZ4FrameCompressor(compression_level=level,
                                                     content_checksum=True)
            sink.write(self._obj.begin())

    def write(self, data: bytes) -> int:
        self.written += len(data)
        if self.spec.method == "none":
            return self.sink.write(data)
        if self.spec.method == "lz4":
            self.sink.write(self._obj.compress(data))
            return len(data)
        return int(self._obj.write(data))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.spec.method == "lz4":
            self.sink.write(self._obj.flush())
        elif self._obj is not None:
            self._obj.close()  # gzip: trailer; zstd: frame end (closefd=False keeps the sink)
        self.sink.flush()

    def __enter__(self) -> CompressingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def compress_stream(source: IO[bytes], sink: IO[bytes], spec: Compression,
                    chunk: int = CHUNK) -> int:
    """Copy ``source`` (pg_dump's stdout) to ``sink`` compressed; the plain size."""
    with CompressingWriter(sink, spec) as writer:
        while block := source.read(chunk):
            writer.write(block)
    return writer.written


def decompressed(path: Path, method: Method | None = None, chunk: int = CHUNK
                 ) -> Iterator[bytes]:
    """The plain bytes of a dump file, in chunks of at most ``chunk`` bytes (for the trailer
    check and for feeding psql). Raises ValueError on a damaged or cut stream."""
    method = method or method_of(path)
    if method in ("zstd", "lz4"):
        # the cheap framing walk first: a cut stream fails before anything is yielded
        reason = zstd_reason(path) if method == "zstd" else lz4_reason(path)
        if reason:
            raise ValueError(reason)
    elif method == "gzip" and os.path.getsize(path) == 0:
        raise ValueError("empty gzip file")
    try:
        with _plain_reader(path, method) as reader:
            while block := reader.read(chunk):
                yield block
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise ValueError(f"truncated or damaged {method} stream ({exc})") from None
    except Exception as exc:
        # zstandard.ZstdError and python-lz4's RuntimeError: checksum or data damage
        if method not in ("zstd", "lz4") or isinstance(exc, (OSError, GeneratorExit)):
            raise
        raise ValueError(f"damaged {method} stream ({exc})") from None


def _plain_reader(path: Path, method: Method) -> Any:
    if method == "gzip":
        return gzip.open(path, "rb")
    if method == "zstd":
        import zstandard

        source = open(path, "rb")  # noqa: SIM115 - closed by the reader (closefd)
        return zstandard.ZstdDecompressor().stream_reader(source, read_across_frames=True,
                                                          closefd=True)
    if method == "lz4":
        import lz4.frame

        return lz4.frame.open(path, "rb")
    return open(path, "rb")


def incomplete_reason(path: Path, method: Method | None = None) -> str | None:
    """None if the compressed stream of ``path`` ends properly, else why not (a phrase).
    For ``none`` there is no framing to check: None."""
    method = method or method_of(path)
    try:
        if method == "zstd":
            return zstd_reason(path)
        if method == "lz4":
            return lz4_reason(path)
        if method == "gzip":
            if os.path.getsize(path) == 0:
                return "empty gzip file"
            for _ in decompressed(path, "gzip"):
                pass
    except ValueError as exc:
        return str(exc)
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    return None


class _Walker:
    """Seek-and-read over a file with a bound: a read past the end is a cut file."""

    def __init__(self, handle: IO[bytes], size: int, what: str) -> None:
        self.handle, self.size, self.what = handle, size, what

    def read(self, n: int, part: str) -> bytes:
        data = self.handle.read(n)
        if len(data) < n:
            raise ValueError(f"{self.what} cut off in {part}")
        return data

    def skip(self, n: int, part: str) -> None:
        target = self.handle.tell() + n
        if target > self.size:
            raise ValueError(f"{self.what} cut off in {part}")
        self.handle.seek(target)

    def at_end(self) -> bool:
        return self.handle.tell() >= self.size


def _frames(path: Path, what: str, frame: Any) -> str | None:
    size = os.path.getsize(path)
    if size == 0:
        return f"empty {what} file"
    with open(path, "rb", buffering=1 << 16) as handle:
        walk = _Walker(handle, size, what)
        try:
            while not walk.at_end():
                (magic,) = struct.unpack("<I", walk.read(4, "a frame's magic number"))
                if magic in _SKIPPABLE:
                    (length,) = struct.unpack("<I", walk.read(4, "a skippable frame"))
                    walk.skip(length, "a skippable frame")
                    continue
                frame(walk, magic)
        except ValueError as exc:
            return str(exc)
    return None


def _zstd_frame(walk: _Walker, magic: int) -> None:
    if magic != _ZSTD_MAGIC:
        raise ValueError(f"not a zstd frame (magic {magic:#010x})")
    (desc,) = walk.read(1, "the frame header")
    fcs_flag, single, checksum, dict_flag = desc >> 6, desc >> 5 & 1, desc >> 2 & 1, desc & 3
    if desc & 0x08:
        raise ValueError("zstd frame header has its reserved bit set (damaged)")
    header = (0 if single else 1) + (0, 1, 2, 4)[dict_flag] + \
        ((1 if single else 0), 2, 4, 8)[fcs_flag]
    walk.read(header, "the frame header")
    while True:
        raw = walk.read(3, "a block header")
        value = raw[0] | raw[1] << 8 | raw[2] << 16
        last, kind, length = value & 1, value >> 1 & 3, value >> 3
        if kind == 3:
            raise ValueError("zstd block of the reserved type (damaged)")
        walk.skip(1 if kind == 1 else length, "a block")
        if last:
            break
    if checksum:
        walk.read(4, "the frame checksum")


def _lz4_frame(walk: _Walker, magic: int) -> None:
    if magic != _LZ4_MAGIC:
        raise ValueError(f"not an lz4 frame (magic {magic:#010x})")
    flg, _bd = walk.read(2, "the frame descriptor")
    if flg >> 6 != 1:
        raise ValueError("lz4 frame of an unknown version (damaged)")
    block_checksum, content_size, content_checksum, dict_id = (
        flg >> 4 & 1, flg >> 3 & 1, flg >> 2 & 1, flg & 1)
    walk.read(8 * content_size + 4 * dict_id + 1, "the frame descriptor")
    while True:
        (value,) = struct.unpack("<I", walk.read(4, "a block size"))
        if value == 0:
            break
        walk.skip((value & 0x7FFFFFFF) + 4 * block_checksum, "a block")
    if content_checksum:
        walk.read(4, "the content checksum")


def zstd_reason(path: Path) -> str | None:
    return _frames(path, "zstd stream", _zstd_frame)


def lz4_reason(path: Path) -> str | None:
    return _frames(path, "lz4 stream", _lz4_frame)
