#!/usr/bin/env bash
# The whole test suite: set up what is missing (see setup-env.sh), then lint, type-check and
# run every test, the integration tests against the real Docker engine and PostgreSQL server.
# Extra arguments go to pytest (e.g. scripts/test.sh -k hooks).
set -euo pipefail
cd "$(dirname "$0")/.."
settings=$(bash scripts/setup-env.sh 3>&1 1>&2)
eval "$settings"
if [ "${KOMPOSE_REQUIRE_INTEGRATION:-0}" = 1 ]; then
  [ "$KOMPOSE_HAVE_DOCKER" = 1 ] || { echo "test: a Docker engine with Compose v2 is required here and missing" >&2; exit 1; }
  [ "$KOMPOSE_HAVE_POSTGRES" = 1 ] || { echo "test: a PostgreSQL server is required here and missing" >&2; exit 1; }
  [ "${KOMPOSE_HAVE_PG_IMAGES:-0}" = 1 ] || { echo "test: the PostgreSQL server images are required here and missing" >&2; exit 1; }
fi
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff" && ruff check kompose_py tests bench
echo "== mypy (strict)" && mypy
echo "== pytest" && exec pytest -q -p no:cacheprovider "$@"
