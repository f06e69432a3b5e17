"""Secrets never leave kompose in clear: which keys are secret, their values masked in any
text, and command lines shown shell-quoted with secrets masked."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping, Sequence

_SECRET_WORDS = ("PASSWORD", "PASSWD", "PASS", "SECRET", "TOKEN", "KEY", "CREDENTIAL", "HASH",
                 "PRIVATE")


def is_secret_key(key: str) -> bool:
    upper = key.upper()
    return any(word in upper for word in _SECRET_WORDS)


def secret_values(env: Mapping[str, str]) -> list[str]:
    """Values to hide wherever kompose prints, longest first so overlaps mask fully."""
    found = {v for k, v in env.items() if v and is_secret_key(k)}
    return sorted(found, key=len, reverse=True)


def mask(text: str, secrets: Iterable[str]) -> str:
    for value in secrets:
        # Very short values would garble unrelated text if replaced everywhere; they are
        # still masked when they stand as a whole word.
        if len(value) >= 4:
            text = text.replace(value, "***")
        else:
            text = re.sub(rf"(?<![\w]){re.escape(value)}(?![\w])", "***", text)
    return text


_ASSIGNMENT = re.compile(r"(-*)([A-Za-z_][\w.-]*)=(.*)", re.DOTALL)


def mask_argument(arg: str) -> str:
    """``--password=x`` and ``DB_PASSWORD=x`` hide their value even when x is unknown here."""
    match = _ASSIGNMENT.fullmatch(arg)
    if match and match[3] and is_secret_key(match[2]):
        return f"{match[1]}{match[2]}=***"
    return arg



# What shlex.quote would quote, less the * of a masked value.
_NEEDS_QUOTES = re.compile(r"[^\w@%+=:,./*-]", re.ASCII).search



def display(argv: Sequence[str], secrets: Sequence[str],
            env_prefix: Mapping[str, str] | None = None) -> str:
    """The shell-quoted command line, secret-masked (passwords never leave masked); the
    ``env_prefix`` variables are shown by name only (``PGPASSWORD=***``)."""
    parts = [f"{k}=***" for k in (env_prefix or {})]
    for arg in argv:
        masked = mask_argument(arg)
        if masked == arg:
            # Mask before quoting: quoting a secret with a ' in it changes its text.
            masked = mask(arg, secrets)
        if masked == arg:
            masked = shlex.quote(arg)
        elif _NEEDS_QUOTES(masked):
            # Still one word to the shell, the *** read as such (not as a glob).
            masked = shlex.quote(masked)
        parts.append(masked)
    return mask(" ".join(parts), secrets)
