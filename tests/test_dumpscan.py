"""The psql meta-command guard, in-process: what psql would run as a meta-command is caught,
whatever chunk boundaries the stream has; what only looks like one (in data, strings,
comments, dollar quotes, identifiers) passes unchanged."""

from __future__ import annotations

import pytest

from kompose_py.db.postgres.scan import MetaCommandGuard, UnsafeDump

PASSES = {
    "copy data and strings": b"SET x = 1;\nCOPY t (a) FROM stdin;\n\\N\t\\connect x\n\\.\n"
                             b"SELECT 'a\\connect';\n\\unrestrict abc\n",
    "dollar quotes": b"CREATE FUNCTION f() RETURNS int AS $$ select '\\c x' $$;\n"
                     b"CREATE FUNCTION g() AS $body$\n\\c\n$body$;\n",
    "comments": b"/* \\c x /* nested */ still \\c */ SELECT 1; -- \\c x\n",
    "identifier": b'SELECT "a\\c" FROM t;\n',
    "doubled quotes": b"SELECT 'it''s \\c', \"a\"\"\\c\";\n",
}
REFUSED = {
    "connect": (b"SELECT 1;\n\\connect shop\nDROP TABLE x;\n", 2, "connect"),
    "shell mid-line": (b"SELECT 1; \\! rm -rf /\n", 1, "!"),
    "after an E-string": (b"SELECT E'it\\'s \\\\'; \\c shop\n", 1, "c"),
    "set ON_ERROR_STOP": (b"\\set ON_ERROR_STOP off\n", 1, "set"),
    "COPY TO stdout is no data block": (b"COPY t TO stdout;\n\\c x\n", 2, "c"),
    "output to a file": (b"SELECT 1;\n\\o /tmp/x\n", 2, "o"),
}


def scan(data: bytes, chunk: int, force: bool = False) -> tuple[bytes, MetaCommandGuard]:
    """What the guard hands on, fed in chunks as the import feeds psql (piece by piece)."""
    guard = MetaCommandGuard(force)
    out = b"".join(part for i in range(0, len(data), chunk)
                   for part in guard.parts(data[i:i + chunk]))
    return out + guard.finish(), guard


@pytest.mark.parametrize("chunk", [1, 3, 4096])
@pytest.mark.parametrize("case", list(PASSES))
def test_what_only_looks_like_a_meta_command_passes_unchanged(case: str, chunk: int) -> None:
    out, guard = scan(PASSES[case], chunk)
    assert out == PASSES[case] and guard.removed == []


@pytest.mark.parametrize("chunk", [1, 3, 4096])
@pytest.mark.parametrize("case", list(REFUSED))
def test_meta_commands_are_refused_at_their_line(case: str, chunk: int) -> None:
    data, line, command = REFUSED[case]
    with pytest.raises(UnsafeDump) as caught:
        scan(data, chunk)
    assert (caught.value.line, caught.value.command) == (line, command)


def test_force_leaves_the_command_out_and_keeps_the_rest() -> None:
    out, guard = scan(REFUSED["connect"][0], 5, force=True)
    assert out == b"SELECT 1;\n\nDROP TABLE x;\n"
    assert guard.removed == [(2, "connect")]


@pytest.mark.parametrize("chunk", [1, 7, 4096, 1 << 20])
def test_copy_data_full_of_backslashes_ends_at_its_own_line(chunk: int) -> None:
    """COPY data with more backslashes than the fast search looks at (NULLs are ``\\N``,
    escapes ``\\t``), lines that only start or end like the end (``\\.x``, ``\\\\.``), a CR
    before the end's newline: the data passes unchanged, and a meta-command after it is still
    caught on its own line."""
    rows = b"".join(b"%d\t\\N\t\\.x\\\\\n\\.%d\t\\N\tends in \\\\.\n" % (n, n)
                    for n in range(500))
    data = (b"COPY t (a, b, c) FROM stdin;\n" + rows + b"\\.\r\n"
            + b"COPY u (a) FROM stdin;\n" + rows + b"\\.\n")
    out, guard = scan(data, chunk)
    assert out == data and guard.removed == []
    with pytest.raises(UnsafeDump) as caught:
        scan(data + b"\\! echo\n", chunk)
    assert caught.value.line == data.count(b"\n") + 1 and caught.value.command == "!"
    assert b"".join([MetaCommandGuard().feed(data)]) == data  # feed: the pieces, joined
