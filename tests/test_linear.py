"""Issue 12.11: `.env` parsing, the hook scan and hooks:check do work in proportion to their
input. Proven by counting the work, not by timing it: a parser that looks back over the text
for every line (as the hook scan once did, `text.count("\\n", 0, pos)` per function), or a
check that compares every unknown name with every valid one (19 s for 20,000 names), fails
these bounds by orders of magnitude."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, SupportsIndex

import pytest

from kompose_py import hookcheck, hooks
from kompose_py.envfiles import parse_bindings, substitute
from kompose_py.runner.run import DryRunner


class CountingText(str):
    """A str that adds up how many characters its searches and slices cover."""

    examined = 0

    @staticmethod
    def _span(text: str, start: SupportsIndex | None, end: SupportsIndex | None) -> int:
        lo = 0 if start is None else int(start)
        hi = len(text) if end is None else min(int(end), len(text))
        return max(0, hi - lo)

    def count(self, sub: str, start: SupportsIndex | None = None,  # type: ignore[override]
              end: SupportsIndex | None = None) -> int:
        CountingText.examined += self._span(self, start, end)
        return str.count(self, sub, start, end)

    def find(self, sub: str, start: SupportsIndex | None = None,  # type: ignore[override]
             end: SupportsIndex | None = None) -> int:
        found = str.find(self, sub, start, end)
        CountingText.examined += self._span(self, start, found + len(sub) if found >= 0 else end)
        return found

    def startswith(self, prefix: Any, start: SupportsIndex | None = None,  # type: ignore[override]
                   end: SupportsIndex | None = None) -> bool:
        CountingText.examined += 8
        return str.startswith(self, prefix, start, end)

    def __getitem__(self, key: Any) -> str:  # type: ignore[override]
        part = str.__getitem__(self, key)
        CountingText.examined += max(1, len(part))
        return part


def env_text(lines: int) -> str:
    out = []
    for i in range(lines):
        out.append((f"V{i}=plain {i}", f'V{i}="q ${{V{i - 1}:-d}} $V{i - 1}"',
                    f"export V{i}='lit {i}'", f"# comment {i}", f"V{i}=x # tail")[i % 5])
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("lines", [2_000, 8_000])
def test_env_parsing_reads_each_character_a_few_times(lines: int) -> None:
    text = CountingText(env_text(lines))
    CountingText.examined = 0
    values: dict[str, str] = {}
    for binding in parse_bindings(text):
        values[binding.key] = substitute(binding.value or "", values.get)
    assert len(values) == lines * 4 // 5
    assert CountingText.examined <= 6 * len(text), (CountingText.examined, len(text))


@pytest.mark.parametrize("functions", [2_000, 8_000])
def test_hook_scan_reads_each_character_a_few_times(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    functions: int) -> None:
    path = tmp_path / "hooks.sh"
    path.write_text("".join(f"hook_pre_up{i}() {{\n  echo {i}\n}}\n" for i in range(functions)))
    real = Path.read_text
    monkeypatch.setattr(Path, "read_text",
                        lambda self, *a, **k: CountingText(real(self, *a, **k)))
    CountingText.examined = 0
    found = hooks.definitions(path)
    assert len(found) == functions and found[-1] == (f"hook_pre_up{functions - 1}",
                                                     3 * functions - 2)
    assert CountingText.examined <= 3 * path.stat().st_size


def test_hooks_check_compares_an_unknown_name_with_the_commands_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each unknown ``hook_<phase>_<cmd>`` is compared with the few dozen command names
    (cached per command), not with every valid hook name (four times as many, each longer)."""
    names = 2_000
    path = tmp_path / "hooks.sh"
    path.write_text("".join(f"hook_post_dwn{i}() {{ :; }}\n" for i in range(names)))
    compared = 0
    real = difflib.SequenceMatcher.set_seq1

    def counting(self: difflib.SequenceMatcher[str], a: Any) -> None:
        nonlocal compared
        compared += 1
        real(self, a)

    monkeypatch.setattr(difflib.SequenceMatcher, "set_seq1", counting)
    hookcheck._closest_command.cache_clear()
    findings = hookcheck.check_file(path, DryRunner())
    assert len(findings) == names
    assert compared <= names * (len(hookcheck._hooked_commands()) + 2)
    assert compared < names * len(hookcheck.valid_names()) / 3
