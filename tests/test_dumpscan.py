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
    "after an E-string": (b"SELECT E'it''s \\\\x'; \\c shop\n", 1, "c"),
    "set ON_ERROR_STOP": (b"\\set ON_ERROR_STOP off\n", 1, "set"),
    "a COPY's data ends at its own line": (b"COPY t (a) FROM stdin;\n\\N\n\\.\n\\c x\n", 4, "c"),
    "backtick in \\restrict": (b"\\restrict `touch x`\n", 1, "restrict"),
    "\\echo": (b"\\echo hi\n", 1, "echo"),
    "a CR ends a -- comment": (b"SELECT 1; -- x\r\\! touch x\n", 1, "!"),
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


# What psql could read differently from the guard: refused at that line whatever --force says.
# (Found by a hostile review; each of these ran its shell command through psql 15 before.)
P = b"\\! touch /tmp/kompose-guard-pwned\n"
T = b"CREATE TABLE t (a text);\n"
UNCLEAR = {
    "NUL in COPY data": (T + b"COPY t (a) FROM stdin;\n1\\\x00\n\\.\n/*\n\\.\n" + P, 3),
    "NUL in SQL": (b"SELECT 1;\n\x00/*\n" + P + b"*/\n", 2),
    "two COPYs on one line": (T + b"COPY t (a) FROM stdin; COPY t (a) FROM stdin;\n1\n\\.\n'\n"
                              b"\\.\n" + P, 2),
    "COPY TO STDOUT that mentions stdin": (
        b"COPY (WITH stdin AS (SELECT 1) SELECT * FROM stdin) TO STDOUT;\n" + P + b"\\.\n", 1),
    "COPY TO stdout": (b"COPY t TO stdout;\n\\c x\n", 1),
    "COPY FROM stdin with options": (T + b"COPY t FROM stdin WITH (FORMAT text);\n'\n\\.\n" + P
                                     + b"'\n", 2),
    "standard_conforming_strings off": (
        b"SET standard_conforming_strings = off;\nSELECT '\\'' " + P + b"';\n", 2),
    "$e'": (b"SELECT $e'\\'' " + P + b"';\n", 1),
    "SJIS backslash": (b"SET client_encoding = 'SJIS';\nSELECT E'\x95\\' " + P + b"';\n", 2),
    "E-string escaped quote": (b"SELECT E'it\\'s';\n", 1),
}


@pytest.mark.parametrize("chunk", [1, 3, 4096])
@pytest.mark.parametrize("case", list(UNCLEAR))
def test_what_psql_could_read_otherwise_is_refused_even_with_force(case: str,
                                                                   chunk: int) -> None:
    data, line = UNCLEAR[case]
    for force in (False, True):
        with pytest.raises(UnsafeDump) as caught:
            scan(data, chunk, force=force)
        assert caught.value.line == line, caught.value.message
        assert "--force does not help" in caught.value.message


@pytest.mark.parametrize("case", ["from/**/stdin", "FROM -- x then stdin"])
def test_a_copy_split_by_comments_is_followed_like_psql(case: str) -> None:
    """A comment between FROM and stdin is white space to the server: the data that follows
    is data (a quote in it opens nothing), and a meta-command after its end is caught."""
    copy = {"from/**/stdin": b"COPY t (a) FROM/**/stdin;\n",
            "FROM -- x then stdin": b"COPY t (a) FROM -- x\nstdin;\n"}[case]
    data = T + copy + b"'\n\\.\n"
    out, _ = scan(data, 5)
    assert out == data
    with pytest.raises(UnsafeDump) as caught:
        scan(data + P, 5)
    assert caught.value.command == "!" and caught.value.line == data.count(b"\n") + 1
