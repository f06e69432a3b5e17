#!/bin/sh
# Entrypoint of the kompose/postgres:* images that scripts/build-pg-image.sh builds (no registry
# here, so the official image cannot be pulled). It understands the official image's settings,
# so a compose.yaml written for `postgres:NN` runs unchanged:
#   POSTGRES_USER               superuser name (default postgres)
#   POSTGRES_PASSWORD           its password; required unless POSTGRES_HOST_AUTH_METHOD=trust
#   POSTGRES_DB                 database created on first start (default: POSTGRES_USER)
#   POSTGRES_HOST_AUTH_METHOD   auth for TCP connections (default scram-sha-256)
#   POSTGRES_INITDB_ARGS        extra initdb arguments (word-split, as the official image does)
#   PGDATA                      data directory (default /var/lib/postgresql/data)
#   /docker-entrypoint-initdb.d/*.sql, *.sql.gz, *.sh   run once, on an empty data directory
# It is POSIX sh because the host-binaries image has only busybox.
set -eu

# `docker run IMAGE -c foo=bar` means "postgres with these options", as in the official image;
# any other command (sh, psql, pg_dump, ...) just runs.
if [ $# -eq 0 ] || [ "${1#-}" != "$1" ]; then
  set -- postgres "$@"
fi
if [ "$1" != postgres ]; then
  exec "$@"
fi

: "${PGDATA:=/var/lib/postgresql/data}"
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
: "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"
export PGDATA

if [ "$(id -u)" = 0 ]; then
  # A bind-mounted or fresh volume is usually root's; PostgreSQL refuses a data directory that
  # is not its own or is readable by others.
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres /var/run/postgresql
  chmod 2775 /var/run/postgresql
  if [ "$(stat -c %U "$PGDATA")" != postgres ]; then
    chown -R postgres:postgres "$PGDATA"
  fi
  chmod 700 "$PGDATA"
  # Re-run this script as postgres with exec all the way down, so that postgres itself is
  # PID 1 and gets `docker stop`'s SIGINT (fast shutdown) directly. Debian has setpriv;
  # busybox has no setpriv --reuid, but its su execs the shell in place. The `--` matters:
  # busybox su would otherwise take `postgres -c name=value` as its own -c and run that.
  if setpriv --help 2>&1 | grep -q -- --reuid; then
    exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$0" "$@"
  fi
  # shellcheck disable=SC2016  # expanded by the shell su starts, with this script's arguments
  exec su -p -s /bin/sh -c 'exec "$0" "$@"' postgres -- "$0" "$@"
fi

run_sql() {  # psql as the superuser over the unix socket (local connections are trusted)
  psql -q -v ON_ERROR_STOP=1 --no-psqlrc -U "$POSTGRES_USER" "$@"
}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
    echo "error: POSTGRES_PASSWORD is not set; set it, or POSTGRES_HOST_AUTH_METHOD=trust to allow every connection without one" >&2
    exit 1
  fi
  # The password goes to initdb in a file, never on a command line that `ps` would show.
  # An empty password is not passed at all: initdb would set '' (which PostgreSQL refuses).
  pwopt=
  if [ -n "${POSTGRES_PASSWORD:-}" ]; then
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    pwopt=--pwfile=$pwfile
  fi
  # --no-sync: initdb's fsync costs seconds on slow disks and buys nothing for a fresh cluster
  # that a crash would simply re-create. User arguments come last so that they win.
  # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a list of arguments, as in the official image
  initdb -D "$PGDATA" -U "$POSTGRES_USER" $pwopt -E UTF8 --locale=C.UTF-8 --no-sync \
    --auth-local=trust --auth-host="$POSTGRES_HOST_AUTH_METHOD" ${POSTGRES_INITDB_ARGS:-} >/dev/null
  if [ -n "$pwopt" ]; then rm -f "$pwfile"; fi
  # initdb only allows 127.0.0.1 and ::1; a container is reached from other addresses.
  printf 'host all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >> "$PGDATA/pg_hba.conf"
  printf "listen_addresses = '*'\n" >> "$PGDATA/postgresql.conf"

  if [ "$POSTGRES_DB" != postgres ] || [ -n "$(ls -A /docker-entrypoint-initdb.d 2>/dev/null)" ]; then
    # A temporary server on the unix socket only, so that nobody connects before setup is done.
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w -s start
    if [ "$POSTGRES_DB" != postgres ]; then
      # :"db" quotes the name as an identifier, whatever characters it has.
      echo 'CREATE DATABASE :"db";' | run_sql -d postgres -v db="$POSTGRES_DB"
    fi
    for f in /docker-entrypoint-initdb.d/*; do
      case $f in
        *.sh)
          echo "$0: running $f"
          # Like the official image: run an executable script, source any other.
          # shellcheck disable=SC1090  # the user's init script, known only at run time
          if [ -x "$f" ]; then "$f"; else . "$f"; fi ;;
        *.sql)    echo "$0: running $f"; run_sql -d "$POSTGRES_DB" -f "$f" ;;
        *.sql.gz) echo "$0: running $f"; gunzip -c "$f" | run_sql -d "$POSTGRES_DB" ;;
        *)        if [ -e "$f" ]; then echo "$0: ignoring $f"; fi ;;
      esac
    done
    pg_ctl -D "$PGDATA" -m fast -w -s stop
  fi
  echo "PostgreSQL init process complete; ready for start up."
fi

exec "$@"
