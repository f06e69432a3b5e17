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
if [ "$KOMPOSE_HAVE_DOCKER" != 1 ] || [ "${KOMPOSE_HAVE_PG_IMAGES:-0}" != 1 ]; then
  echo "demo: no Docker engine with Compose v2, busybox and PostgreSQL images here; showing the run as a dry-run" >&2
  step kompose --list
  step kompose --dry-run "*" up -d
  step kompose "*" down --dry-run
  exit 0
fi
step kompose --list
step kompose "*" up -d --wait
status=$?
step kompose "*" ps
step kompose web exec -T web wget -qO- http://127.0.0.1:8080/
# The db stack's PostgreSQL runs in its own container (DB_HOST=postgres on the shared
# network): kompose dumps and loads it there with docker exec, no client tools needed here.
step kompose db db:shell -c 'SELECT * FROM notes'
step kompose "*" db:export
step kompose "*" db:list
step kompose db db:shell -c "INSERT INTO notes (body) VALUES ('added after the dump')"
step kompose db db:import
step kompose db db:shell -c 'SELECT * FROM notes'
step kompose "*" db:cleanup --keep 2
step kompose "*" down -v
exit $status
