#!/bin/bash
# Throw-away Docker Swarm for the test suite: N engines on this one Linux host.
#
#   scripts/swarm-cluster.sh up [N]   build N nodes (default 3; node 1 manages, the rest work)
#   scripts/swarm-cluster.sh env      print the export lines of the running cluster again
#   scripts/swarm-cluster.sh down     remove everything `up` made; harmless when nothing is there
#   scripts/swarm-cluster.sh stop K   stop node K's engine (a worker) and wait until it is Down
#   scripts/swarm-cluster.sh start K  start it again and wait until it is Ready
#
# `up` and `env` print only `export NAME=value` lines on stdout, so `eval "$(... up)"` works;
# progress and errors go to stderr. Needs root and: dockerd, docker, ip (iproute2), nsenter,
# unshare, setsid (util-linux), flock.
#
# Layout (I = a free index 1..199, picked under a lock so parallel clusters do not collide):
#   namespace kswI-hub   a bridge `sw` joining the nodes; the host reaches it through the
#                        veth kswI (198.19.I.254/24 on the host side)
#   namespace kswI-nK    node K, eth0 = 198.19.I.K/24, no default route (nothing leaves the box),
#                        its own dockerd (own containerd, data, docker0, iptables, hostname ksw-nK)
# The bridge sits in a namespace of its own, not in the host's: with br_netfilter on, frames
# bridged in the host namespace traverse the host's FORWARD chain, whose DROP policy (set by the
# main engine) would eat overlay traffic, and the host's iptables are not ours to change.
#
# Settings (environment):
#   KSW_DIR      state directory (default /tmp/ksw). At most 60 characters: the engines' unix
#                sockets live in it and socket paths are limited to 108 bytes.
#   KSW_IMAGES   images copied from the source engine onto every node
#                (default "busybox:latest kompose/postgres:15")
#   KSW_SOURCE   the engine images are copied from (default unix:///var/run/docker.sock; only
#                `image inspect` and `save` are run against it)
#   KSW_KEEP=1   keep a half-built cluster when `up` fails (debugging)
set -eu

STATE=${KSW_DIR:-/tmp/ksw}
case "$STATE" in /*) ;; *) STATE="$PWD/$STATE" ;; esac
STATE=${STATE%/}
MARKER="$STATE/.ksw"
SOURCE=${KSW_SOURCE:-unix:///var/run/docker.sock}
IMAGES=${KSW_IMAGES-busybox:latest kompose/postgres:15}
NET=198.19
START=$(date +%s%N)

say() { echo "ksw [$(( ($(date +%s%N) - START) / 1000000 ))ms] $*" >&2; }
fail() { echo "ksw: $*" >&2; exit 1; }
# The caller's DOCKER_* settings must never redirect our commands to another engine.
on_node() { local k=$1; shift
  env -u DOCKER_CONTEXT -u DOCKER_TLS_VERIFY -u DOCKER_CERT_PATH DOCKER_HOST="unix://$STATE/n$k.sock" docker "$@"; }
on_source() { env -u DOCKER_CONTEXT -u DOCKER_TLS_VERIFY -u DOCKER_CERT_PATH DOCKER_HOST="$SOURCE" docker "$@"; }
node_ids() { local d; for d in "$STATE"/n[0-9]*; do [ -d "$d" ] && echo "${d##*/n}"; done | sort -n; }
# A recorded pid counts only while its command line still names our socket (pids get reused).
still_ours() { [ -n "$1" ] && [ -r "/proc/$1/cmdline" ] &&
  tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null | grep -qF -- "--host unix://$STATE/n$2.sock "; }

# Node K's dockerd in its namespace, in the background (its pid in nK/pid). The same command
# line brings a stopped node back with its data, so it rejoins the swarm by itself.
start_engine() { local k=$1 idx=$2
  # nsenter --net keeps the host's /sys (cgroups stay visible, unlike `ip netns exec`);
  # unshare --uts gives the node its own hostname; exec keeps $! = dockerd's pid.
  setsid nsenter --net="/run/netns/ksw$idx-n$k" unshare --uts \
    sh -c 'hostname "$1"; shift; exec "$@"' sh "ksw-n$k" \
    dockerd --config-file "$STATE/n$k/daemon.json" --host "unix://$STATE/n$k.sock" \
      --data-root "$STATE/n$k/data" --exec-root "$STATE/n$k/exec" \
      --pidfile "$STATE/n$k/dockerd.pid" --cgroup-parent "/ksw$idx-n$k" \
      >> "$STATE/n$k/dockerd.log" 2>&1 < /dev/null &
  echo $! > "$STATE/n$k/pid"
}

engine_answers() { local k=$1 t
  for t in $(seq 1 300); do
    on_node "$k" info >/dev/null 2>&1 && return 0
    still_ours "$(cat "$STATE/n$k/pid")" "$k" || fail "dockerd of node $k died"
    sleep 0.2
  done
  fail "dockerd of node $k does not answer"
}

# The node's state as the manager sees it (Ready/Down/Unknown).
node_status() { on_node 1 node ls --filter "name=ksw-n$1" --format '{{.Hostname}} {{.Status}}' |
  awk -v h="ksw-n$1" '$1 == h {print $2}'; }

existing_node() { local k=$1
  [ -f "$MARKER" ] && [ -f "$STATE/env" ] || fail "no cluster at $STATE"
  case "$k" in ''|*[!0-9]*) fail "K must be a node number" ;; esac
  [ -d "$STATE/n$k" ] || fail "no node $k in the cluster at $STATE"
  [ "$k" != 1 ] || fail "node 1 is the manager; stopping it would end the cluster"
}

# stop K: node K's engine goes away as a crashed or powered-off one would (SIGTERM: dockerd
# stops its containers and its containerd), then waits until the manager says it is Down.
stop_node() { local k=$1 pid t
  existing_node "$k"
  pid=$(cat "$STATE/n$k/pid" 2>/dev/null || true)
  still_ours "$pid" "$k" || fail "dockerd of node $k is not running"
  kill -TERM "$pid"
  for t in $(seq 1 300); do still_ours "$pid" "$k" || break; sleep 0.2; done
  still_ours "$pid" "$k" && fail "dockerd of node $k did not stop"
  for t in $(seq 1 600); do [ "$(node_status "$k")" = Down ] && break; sleep 0.2; done
  [ "$(node_status "$k")" = Down ] || fail "the manager does not see node $k Down"
  say "node $k stopped; the manager sees it Down"
}

# start K: node K's engine again, with its data; waits until the manager says it is Ready.
start_node() { local k=$1 pid t
  existing_node "$k"
  pid=$(cat "$STATE/n$k/pid" 2>/dev/null || true)
  # Already running (a `stop` that failed half-way): only wait for it to be Ready.
  still_ours "$pid" "$k" || start_engine "$k" "$(cat "$STATE/slot")"
  engine_answers "$k"
  for t in $(seq 1 600); do [ "$(node_status "$k")" = Ready ] && break; sleep 0.2; done
  [ "$(node_status "$k")" = Ready ] || fail "node $k did not become Ready again"
  say "node $k Ready again"
}

show_env() {
  [ -f "$STATE/env" ] || fail "no cluster at $STATE"
  sed 's/^/export /' "$STATE/env"
}

up() {
  local n=${1:-3} idx="" k t pids tok
  case "$n" in ''|*[!0-9]*) fail "N must be a number" ;; esac
  [ "$n" -ge 1 ] && [ "$n" -le 20 ] || fail "N must be between 1 and 20"
  [ "$(id -u)" = 0 ] || fail "must run as root"
  for t in dockerd docker ip nsenter unshare setsid flock; do
    command -v "$t" >/dev/null || fail "$t is not installed"
  done
  case "$STATE" in *[!A-Za-z0-9/._-]*) fail "KSW_DIR: only A-Za-z0-9/._- allowed" ;; esac
  [ ${#STATE} -le 60 ] || fail "KSW_DIR longer than 60 characters"
  if [ -n "$(ls -A "$STATE" 2>/dev/null)" ]; then
    [ -f "$MARKER" ] && fail "a cluster already lives at $STATE ('$0 down' first)"
    fail "$STATE is not empty"
  fi
  mkdir -p "$STATE"; : > "$MARKER"
  trap 'rc=$?; if [ $rc -ne 0 ] && [ -z "${BUILT:-}" ]; then
          for f in "$STATE"/n*/dockerd.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -n 12 "$f" >&2; }; done
          [ -n "${KSW_KEEP:-}" ] || down >&2; fi' EXIT

  mkdir -p /run/lock
  exec 8>/run/lock/ksw.lock
  flock 8
  for t in $(seq 1 199); do
    [ -e "/run/netns/ksw$t-hub" ] || ip link show "ksw$t" >/dev/null 2>&1 ||
      ip -4 -o addr show | grep -qF " $NET.$t." || { idx=$t; break; }
  done
  [ -n "$idx" ] || fail "all 199 cluster slots are taken"
  echo "$idx" > "$STATE/slot"
  ip netns add "ksw$idx-hub"
  ip -n "ksw$idx-hub" link set lo up
  ip -n "ksw$idx-hub" link add sw type bridge
  ip -n "ksw$idx-hub" link set sw up
  ip link add "ksw$idx" type veth peer name uplink netns "ksw$idx-hub"
  ip -n "ksw$idx-hub" link set uplink master sw up
  ip addr add "$NET.$idx.254/24" dev "ksw$idx"
  ip link set "ksw$idx" up
  flock -u 8; exec 8>&-

  for k in $(seq 1 "$n"); do
    local ns="ksw$idx-n$k"
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip -n "ksw$idx-hub" link add "p$k" type veth peer name eth0 netns "$ns"
    ip -n "ksw$idx-hub" link set "p$k" master sw up
    ip -n "$ns" addr add "$NET.$idx.$k/24" dev eth0
    ip -n "$ns" link set eth0 up
    mkdir -p "$STATE/n$k"
    # dockerd 20.10 takes its engine ID from a key file, /etc/docker/key.json unless told
    # otherwise; nodes sharing it would all claim to be the same engine.
    printf '{"deprecated-key-path": "%s/n%s/key.json"}\n' "$STATE" "$k" > "$STATE/n$k/daemon.json"
    start_engine "$k" "$idx"
  done
  for k in $(seq 1 "$n"); do engine_answers "$k"; done
  say "$n engines answer (slot $idx)"

  on_node 1 swarm init --advertise-addr "$NET.$idx.1" --listen-addr "$NET.$idx.1:2377" >/dev/null
  tok=$(on_node 1 swarm join-token -q worker)
  pids=""
  for k in $(seq 2 "$n"); do
    on_node "$k" swarm join --token "$tok" --advertise-addr "$NET.$idx.$k" \
      --listen-addr "$NET.$idx.$k:2377" "$NET.$idx.1:2377" >/dev/null & pids="$pids $!"
  done
  for t in $pids; do wait "$t" || fail "a node could not join"; done
  for t in $(seq 1 300); do
    [ "$(on_node 1 node ls --format '{{.Status}}' | grep -c '^Ready$')" = "$n" ] && break
    sleep 0.2
  done
  [ "$(on_node 1 node ls --format '{{.Status}}' | grep -c '^Ready$')" = "$n" ] || fail "nodes not Ready"
  say "swarm of $n nodes Ready"

  # No registry here: every node needs its own copy of each image a task may use.
  if [ -n "$IMAGES" ]; then
    for t in $IMAGES; do on_source image inspect "$t" >/dev/null 2>&1 || fail "image $t missing on $SOURCE"; done
    # shellcheck disable=SC2086
    on_source save $IMAGES > "$STATE/images.tar"
    pids=""
    for k in $(seq 1 "$n"); do on_node "$k" load -q -i "$STATE/images.tar" >/dev/null & pids="$pids $!"; done
    for t in $pids; do wait "$t" || fail "loading images failed"; done
    rm -f "$STATE/images.tar"
    say "images on every node: $IMAGES"
  fi

  {
    echo "KSW_DIR=$STATE"
    echo "KSW_NODES=$n"
    echo "KSW_HOST_ADDR=$NET.$idx.254"
    echo "KSW_MANAGER=unix://$STATE/n1.sock"
    for k in $(seq 1 "$n"); do
      echo "KSW_N${k}_HOST=unix://$STATE/n$k.sock"
      echo "KSW_N${k}_ADDR=$NET.$idx.$k"
      echo "KSW_N${k}_HOSTNAME=ksw-n$k"
    done
    echo "DOCKER_HOST=unix://$STATE/n1.sock"
  } > "$STATE/env"
  BUILT=1
  show_env
}

down() {
  local k pid t idx left
  [ -e "$STATE" ] || { echo "ksw: no cluster at $STATE" >&2; return 0; }
  [ -f "$MARKER" ] || fail "$STATE was not made by this script; leaving it alone"
  idx=$(cat "$STATE/slot" 2>/dev/null || true)
  # dockerd stops its containers and its containerd when it gets SIGTERM.
  for k in $(node_ids); do
    pid=$(cat "$STATE/n$k/pid" 2>/dev/null || true)
    still_ours "$pid" "$k" && kill -TERM "$pid" 2>/dev/null || true
  done
  for t in $(seq 1 150); do
    left=""
    for k in $(node_ids); do
      pid=$(cat "$STATE/n$k/pid" 2>/dev/null || true)
      still_ours "$pid" "$k" && left="$left $pid"
    done
    [ -z "$left" ] && break
    sleep 0.2
  done
  # shellcheck disable=SC2086
  [ -z "$left" ] || { say "SIGKILL to dockerd$left"; kill -KILL $left 2>/dev/null || true; sleep 0.3; }
  # After a crash containerd and shims survive their dockerd; our exec-root in their command
  # line identifies them and nothing else.
  for t in $(grep -las -- "$STATE/n[0-9]*/exec/containerd" /proc/[0-9]*/cmdline || true); do
    t=${t#/proc/}; kill -KILL "${t%/cmdline}" 2>/dev/null || true
  done
  if [ -n "$idx" ]; then
    # container processes whose shim died with it still sit in the node's cgroup
    for t in $(cat /sys/fs/cgroup/ksw"$idx"-n[0-9]*/cgroup.procs /sys/fs/cgroup/ksw"$idx"-n[0-9]*/*/cgroup.procs \
                 /sys/fs/cgroup/*/ksw"$idx"-n[0-9]*/cgroup.procs /sys/fs/cgroup/*/ksw"$idx"-n[0-9]*/*/cgroup.procs \
                 2>/dev/null | sort -un); do
      kill -KILL "$t" 2>/dev/null || true
    done
  fi
  awk -v p="$STATE/" 'index($2, p) == 1 {print $2}' /proc/mounts | sort -r | while read -r t; do
    umount "$t" 2>/dev/null || umount -l "$t" 2>/dev/null || true
  done
  if [ -n "$idx" ]; then
    for t in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^ksw$idx-(hub|n[0-9]+)\$" || true); do
      ip netns del "$t" 2>/dev/null || true
    done
    ip link del "ksw$idx" 2>/dev/null || true
    for t in /sys/fs/cgroup/ksw"$idx"-n[0-9]* /sys/fs/cgroup/*/ksw"$idx"-n[0-9]*; do
      [ -d "$t" ] && find "$t" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
  fi
  if awk -v p="$STATE/" 'index($2, p) == 1 {f=1} END {exit !f}' /proc/mounts; then
    fail "mounts remain under $STATE; not deleting it"
  fi
  rm -rf "$STATE"
  say "cluster at $STATE removed"
}

case "${1:-}" in
  up) shift; up "$@" ;;
  down) down ;;
  env) show_env ;;
  stop) stop_node "${2:-}" ;;
  start) start_node "${2:-}" ;;
  *) sed -n '2,10s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
esac
