#!/usr/bin/env bash
# The main job on the example stacks in stacks/: bring them up with their hooks, show them,
# bring them down. Without a reachable Docker engine it says so and shows the same run as a
# dry-run.
set -uo pipefail
cd "$(dirname "$0")/.."
settings=$(bash scripts/setup-env.sh 3>&1 1>&2)
eval "$settings"
export PATH="$PWD/.venv/bin:$PATH"
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
if [ "$KOMPOSE_HAVE_DOCKER" != 1 ]; then
  echo "demo: no Docker engine with Compose v2 and a busybox image here; showing the run as a dry-run" >&2
  step kompose --list
  step kompose --dry-run "*" up -d
  step kompose "*" down --dry-run
  exit 0
fi
step kompose --list
step kompose "*" up -d
status=$?
step kompose "*" ps
step kompose web exec -T web wget -qO- http://127.0.0.1:8080/
if [ "$KOMPOSE_HAVE_POSTGRES" = 1 ]; then
  # The db stack's database on the host's PostgreSQL (created once, with a little data).
  export PGPASSWORD=$KOMPOSE_TEST_PGPASSWORD
  psql -h "$KOMPOSE_TEST_PGHOST" -p "$KOMPOSE_TEST_PGPORT" -U "$KOMPOSE_TEST_PGUSER" -d postgres -qAt \
    -c "SELECT 1 FROM pg_database WHERE datname = 'kompose_example'" | grep -q 1 || {
    psql -h "$KOMPOSE_TEST_PGHOST" -p "$KOMPOSE_TEST_PGPORT" -U "$KOMPOSE_TEST_PGUSER" -d postgres -qc "CREATE DATABASE kompose_example"
    psql -h "$KOMPOSE_TEST_PGHOST" -p "$KOMPOSE_TEST_PGPORT" -U "$KOMPOSE_TEST_PGUSER" -d kompose_example -qc \
      "CREATE TABLE notes (id serial PRIMARY KEY, body text); INSERT INTO notes (body) VALUES ('hello'), ('world')"
  }
  unset PGPASSWORD
  step kompose "*" db:export
  step kompose "*" db:list
  step kompose db db:import
  step kompose "*" db:cleanup --keep 2
fi
step kompose "*" down
exit $status
