"""The package as published: an sdist built with ``python -m build`` holds what its own tests
need, its metadata is complete, nothing refers to files outside the repository, and the sdist's
own tests pass when run from the unpacked sdist (not from this checkout)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.conftest import REPO

# Fast, engine-free tests of the sdist itself: enough to prove it is a runnable test tree.
SDIST_TESTS = ("tests/test_stacks.py", "tests/test_root_discovery.py",
               "tests/test_json_reports.py", "tests/test_completion.py")


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--sdist", "--outdir", str(out), str(REPO)],
                   check=True, capture_output=True, timeout=600)
    (archive,) = out.glob("*.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(out, filter="data") if sys.version_info >= (3, 12) else \
            tar.extractall(out)
    (top,) = [p for p in out.iterdir() if p.is_dir()]
    return top


def test_sdist_contents_and_metadata(sdist: Path) -> None:
    for needed in ("LICENSE", "README.md", "pyproject.toml", "tests/conftest.py",
                   "tests/__init__.py", "stacks/web/compose.yaml", "scripts/test.sh",
                   "bench/run.py", ".ci/run", "kompose_py/py.typed"):
        assert (sdist / needed).is_file(), needed
    assert "MIT License" in (sdist / "LICENSE").read_text()
    info = (sdist / "PKG-INFO").read_text()
    assert "License-Expression: MIT" in info and "License-File: LICENSE" in info
    assert "Classifier: License ::" not in info  # the SPDX expression replaces it
    tested = {f"3.{m}" for m in re.findall(r"Programming Language :: Python :: 3\.(\d+)", info)}
    assert "3.10" in tested and "3.13" in tested
    assert re.search(r"^Project-URL: Source, https://", info, re.MULTILINE)
    assert re.search(r"^Keywords: .*docker", info, re.MULTILINE)


# Spelt in pieces so that this file does not match itself. A section sign and a number is
# the outside spec's numbering too: the repository has no numbered sections.
OUTSIDE = "|".join(("SPEC" + r"\.md", "SPEC" + " §", "/work" + "/shared", "\u00a7" + r"\s*\d"))


def test_nothing_refers_to_files_outside_the_repository(sdist: Path) -> None:
    offenders = []
    for path in sdist.rglob("*"):
        if path.is_file() and path.suffix in (".py", ".md", ".toml", ".sh", ""):
            text = path.read_text(errors="replace")
            if re.search(OUTSIDE, text):
                offenders.append(str(path.relative_to(sdist)))
    assert offenders == []


def test_the_sdists_own_tests_pass(sdist: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(sdist)}
    where = subprocess.run([sys.executable, "-c", "import kompose_py; print(kompose_py.__file__)"],
                           cwd=sdist, env=env, capture_output=True, text=True, check=True)
    assert where.stdout.startswith(str(sdist))  # the sdist's code, not this checkout's
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           *SDIST_TESTS], cwd=sdist, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout
