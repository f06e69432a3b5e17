"""kompose's own options found in a raw command line, without the parser (a usage error from
the parser itself must still answer with a JSON document; completion names a shell)."""

from __future__ import annotations

from collections.abc import Sequence


def wants_json(args: Sequence[str]) -> bool:
    """Whether ``--json`` is among kompose's own options (before PATTERN), found without the
    parser: a usage error from the parser itself must still answer with a document."""
    return "--json" in own_options(args)


# kompose's options that take a value (the next word).
TAKES_VALUE = frozenset({"--network", "-e", "--env", "--root", "-j", "--parallel",
                         "--hook-timeout"})


def own_options(args: Sequence[str]) -> list[str]:
    """The words before PATTERN that are kompose's own options (not their values)."""
    found: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--" or not arg.startswith("-"):
            break
        found.append(arg)
        if arg in TAKES_VALUE:
            i += 1
        i += 1
    return found
