"""kompose's own compression of plain dumps: the --compress value, streaming writers in
small memory, and the check that a compressed file ends properly."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kompose_py.db.compression import (
    CompressingWriter,
    Compression,
    compress_stream,
    decompressed,
    incomplete_reason,
    method_of,
    parse_compress,
)
from kompose_py.errors import UsageError
from tests.conftest import _missing

WITH_STREAM = ["gzip", "lz4", "zstd"]


@pytest.mark.parametrize(("text", "expected"), [
    ("gzip", Compression("gzip")), ("zstd", Compression("zstd")), ("LZ4", Compression("lz4")),
    ("zstd:19", Compression("zstd", 19)), ("zstd:level=5", Compression("zstd", 5)),
    ("lz4:12", Compression("lz4", 12)), ("none", Compression("none")),
    ("0", Compression("none")), ("6", Compression("gzip", 6)), (" gzip:1 ", Compression("gzip", 1)),
])
def test_parse(text: str, expected: Compression) -> None:
    assert parse_compress(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("brotli", r"^--compress 'brotli': unknown method 'brotli' \(one of gzip, lz4, zstd, none"),
    ("zstd:99", "zstd levels are 1 to 22"), ("gzip:0", "gzip levels are 1 to 9"),
    ("zstd:fast", "expected zstd:LEVEL, a whole number"), ("none:3", "none takes no level"),
    ("12", "a bare level is gzip's, 1 to 9"), ("", "unknown method ''"),
])
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as info:
        parse_compress(text)
    assert "\n" not in info.value.message


def test_names_and_pg_dump_support() -> None:
    assert [Compression(m).suffix for m in ("none", "gzip", "lz4", "zstd")] == [
        "", ".gz", ".lz4", ".zst"]
    assert method_of(Path("db_20240101_000000Z.sql.zst")) == "zstd"
    assert method_of(Path("db_20240101_000000Z.sql")) == "none"
    assert not Compression("zstd").pg_dump_can(15) and Compression("zstd").pg_dump_can(16)
    assert Compression("gzip", 5).pg_dump_can(15)
    assert Compression("zstd", 5).pg_dump_option(17) == "--compress=zstd:5"
    assert Compression("gzip").pg_dump_option(15) == "--compress=6"
    assert Compression("none").pg_dump_option(15) == "--compress=0"
    assert Compression("gzip", 9).pg_dump_option(16) == "--compress=gzip:9"
    with pytest.raises(ValueError):
        Compression("lz4").pg_dump_option(15)


@pytest.mark.parametrize("spec", ["gzip", "gzip:1", "none"])
def test_pg_dump_15_takes_the_option(spec: str) -> None:
    """The real pg_dump 15 accepts what pg_dump_option(15) gives: it gets past its options
    to the connection (to a port where nothing listens), where a bad value stops it before."""
    if shutil.which("pg_dump") is None:
        _missing("pg_dump on the host")
    option = parse_compress(spec).pg_dump_option(15)
    for given, accepted in ((option, True), ("--compress=gzip", False)):
        done = subprocess.run(["pg_dump", given, "-w", "-s", "-h", "127.0.0.1", "-p", "1",
                               "-U", "nobody", "nodb"], capture_output=True, text=True)
        assert done.returncode != 0
        assert ("invalid value" not in done.stderr) is accepted, done.stderr


def _sample(size: int) -> bytes:
    """Text like COPY data: compressible, not trivially."""
    lines = []
    n = total = 0
    while total < size:
        line = (f"{n}\tcustomer {n * 7919 % 100003}\t{hashlib.md5(str(n).encode()).hexdigest()}"
                f"\t2024-01-{n % 28 + 1:02d}\n".encode())
        lines.append(line)
        total += len(line)
        n += 1
    return b"".join(lines)[:size]


@pytest.mark.parametrize("method", WITH_STREAM)
def test_roundtrip_and_whole(tmp_path: Path, method: str) -> None:
    data = _sample(3 << 20)
    path = tmp_path / f"d.sql{Compression(method).suffix}"  # type: ignore[arg-type]
    with open(path, "wb") as sink:
        size = compress_stream(io.BytesIO(data), sink, parse_compress(method), chunk=65536)
    assert size == len(data)
    assert path.stat().st_size < len(data) * 0.8
    assert incomplete_reason(path) is None
    assert b"".join(decompressed(path)) == data
    assert all(len(block) <= 1 << 20 for block in decompressed(path))
    # the real tools read what kompose wrote
    tool = {"gzip": "gzip", "zstd": "zstd", "lz4": "lz4"}[method]
    if shutil.which(tool):
        out = subprocess.run([tool, "-dc", str(path)], capture_output=True, check=True).stdout
        assert out == data


@pytest.mark.parametrize("method", WITH_STREAM)
def test_cut_anywhere_is_found(tmp_path: Path, method: str) -> None:
    data = _sample(1 << 20)
    whole = tmp_path / f"whole{Compression(method).suffix}"  # type: ignore[arg-type]
    with open(whole, "wb") as sink, CompressingWriter(sink, parse_compress(method)) as writer:
        for at in range(0, len(data), 10000):
            writer.write(data[at:at + 10000])
    blob = whole.read_bytes()
    cut = tmp_path / whole.name
    for keep in sorted({0, 1, 3, 4, 7, 12, 20, len(blob) // 3, len(blob) // 2, len(blob) - 9,
                        len(blob) - 4, len(blob) - 1}):
        cut.write_bytes(blob[:keep])
        reason = incomplete_reason(cut, method)  # type: ignore[arg-type]
        assert reason is not None, f"{method} cut at {keep} of {len(blob)} passed"
        assert "\n" not in reason
        with pytest.raises(ValueError):
            b"".join(decompressed(cut, method))  # type: ignore[arg-type]
    # damaged in the middle: gzip's CRC / zstd's and lz4's checksums
    broken = bytearray(blob)
    broken[len(blob) // 2] ^= 0xFF
    cut.write_bytes(bytes(broken))
    with pytest.raises(ValueError):
        b"".join(decompressed(cut, method))  # type: ignore[arg-type]


PEAK = """
import resource, sys
from kompose_py.db.compression import CompressingWriter, parse_compress, decompressed
from pathlib import Path
method, path, total = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
block = bytes(range(256)) * 4096  # 1 MiB
import random
rng = random.Random(1)
noise = bytes(rng.getrandbits(8) for _ in range(1 << 16))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with open(path, "wb") as sink, CompressingWriter(sink, parse_compress(method)) as w:
    for i in range(total):
        w.write(block[: (1 << 20) - 65536] + noise[i % 7:] + noise[: i % 7])
for chunk in decompressed(path):
    pass
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) // 1024)
"""


@pytest.mark.parametrize("method", WITH_STREAM)
def test_memory_stays_small_whatever_the_size(tmp_path: Path, method: str) -> None:
    """256 MiB in and out again: the peak RSS grows by a few MiB, not with the size."""
    out = subprocess.run([sys.executable, "-c", PEAK, method, str(tmp_path / "big"), "256"],
                         capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout
    grown_mib = int(out)
    assert grown_mib < 40, f"{method}: peak RSS grew by {grown_mib} MiB"
