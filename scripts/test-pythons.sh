#!/usr/bin/env bash
# The test suite on the oldest and the newest Python the package claims (pyproject classifiers),
# each in its own venv (.venv-3.10, .venv-3.13), against the same Docker engine and PostgreSQL
# server as scripts/test.sh (run that first: it sets them up). Extra arguments go to pytest.
# The tests on the Swarm cluster (marked `swarm`) and those of a database in a container
# (marked `container`; most are twins of host-mode tests that run here) run in scripts/test.sh only:
# they drive the same docker subprocesses on every Python and take most of the suite's time.
# KOMPOSE_TEST_PYTHONS_ALL=1 runs them here too.
#
# Interpreters: python3.X on PATH, else pyenv's ~/.pyenv/versions/3.X.*. One that is missing is
# skipped with a message, or fails the run under KOMPOSE_REQUIRE_INTEGRATION=1 (as .ci/run sets).
set -euo pipefail
cd "$(dirname "$0")/.."
settings=$(bash scripts/setup-env.sh 3>&1 1>/dev/null 2>/dev/null) && eval "$settings"
status=0
for version in ${KOMPOSE_TEST_PYTHONS:-3.10 3.13}; do
  python=
  # A pyenv shim is on PATH even when that version is not selected: use what really runs.
  for candidate in "$(command -v "python$version" || true)" \
      $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$version".*/bin/python 2>/dev/null | sort -rV); do
    if [ -n "$candidate" ] && "$candidate" -c 'import sys' >/dev/null 2>&1; then
      python=$candidate
      break
    fi
  done
  if [ -z "$python" ]; then
    echo "test-pythons: Python $version not found (python$version on PATH or pyenv)" >&2
    [ "${KOMPOSE_REQUIRE_INTEGRATION:-0}" = 1 ] && status=1
    continue
  fi
  venv=".venv-$version"
  if [ ! -x "$venv/bin/python" ] || [ pyproject.toml -nt "$venv/.kompose-installed" ]; then
    "$python" -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -e ".[test]" 2>&1 \
      | grep -v -e '^WARNING: Location' -e 'Running pip as' >&2 || true
    touch "$venv/.kompose-installed"
  fi
  echo "== pytest on $("$venv/bin/python" -V)"
  marker=(-m "not swarm and not container")
  [ "${KOMPOSE_TEST_PYTHONS_ALL:-0}" = 1 ] && marker=()
  PATH="$PWD/$venv/bin:$PATH" "$venv/bin/python" -m pytest -q -p no:cacheprovider "${marker[@]}" "$@" || status=1
done
exit $status
