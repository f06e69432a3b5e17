#!/usr/bin/env bash
# Build a real PostgreSQL server image for kompose's tests and example stacks, without a
# registry: the machines this project runs on cannot pull `postgres:NN`.
#
# usage: scripts/build-pg-image.sh MAJOR [TAG]        TAG defaults to kompose/postgres:MAJOR
#
# Two recipes, picked by what the host has:
#   B (host binaries)  MAJOR is installed on the host (/usr/lib/postgresql/MAJOR): a FROM-scratch
#                      image of the host's own PostgreSQL, the libraries ldd names, and a static
#                      busybox as the shell. Offline, about 10 s, about 90 MB.
#   A (debootstrap)    any other MAJOR a Debian release ships (13 bullseye, 15 bookworm, 17
#                      trixie): a minimal Debian made by debootstrap from the mirror the host's
#                      apt uses, postgresql-MAJOR installed in it, `docker import`ed. About a
#                      minute, about 210 MB; gives a server newer than the host's own tools.
# Overrides: PG_IMAGE_RECIPE=A|B, PG_IMAGE_MIRROR=URL, PG_IMAGE_SECURITY_MIRROR=URL.
#
# Both images run pg-image/docker-entrypoint.sh, which takes the official image's POSTGRES_*
# settings, so compose files written for `postgres:NN` work unchanged. The Dockerfiles have no
# RUN step: RUN needs the engine's default bridge (docker0), which a test machine may lack.
#
# Safe and cheap to run again: the image is labelled with a hash of this script and the
# entrypoint (org.kompose.recipe), and a TAG that already carries the current hash is left alone.
# Prints one line: `built TAG (PostgreSQL X.Y, recipe A|B, N s)` or `up to date: TAG`.
# Needs root (debootstrap, chroot, files owned by the postgres uid) and a Docker engine.
set -euo pipefail

die() { printf 'build-pg-image: %s\n' "$*" >&2; exit 1; }
usage() { echo "usage: $0 MAJOR [TAG]   (e.g. $0 17, builds kompose/postgres:17)" >&2; exit 2; }

if [ $# -lt 1 ] || [ $# -gt 2 ] || ! [[ $1 =~ ^[0-9]+$ ]]; then usage; fi
major=$1
tag=${2:-kompose/postgres:$major}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
self=$here/$(basename "${BASH_SOURCE[0]}")
entrypoint=$here/pg-image/docker-entrypoint.sh
host_pg=/usr/lib/postgresql/$major

[ -r "$entrypoint" ] || die "missing $entrypoint"
[ "$(id -u)" = 0 ] || die "needs root (chroot and files owned by the postgres user)"
docker info >/dev/null 2>&1 || die "no Docker engine answers (docker info failed)"

recipe=${PG_IMAGE_RECIPE:-}
if [ -z "$recipe" ]; then
  if [ -x "$host_pg/bin/postgres" ]; then recipe=B; else recipe=A; fi
fi
case $recipe in A|B) ;; *) die "PG_IMAGE_RECIPE must be A or B, not $recipe" ;; esac

# What the image is made of: when either file changes, existing images are out of date.
recipe_hash=$(cat "$self" "$entrypoint" | sha256sum | cut -d' ' -f1)

label() {  # label NAME: the label's value on $tag, empty when the image or the label is missing
  docker image inspect -f "{{with .Config.Labels}}{{index . \"$1\"}}{{end}}" "$tag" 2>/dev/null || true
}
up_to_date() {
  [ "$(label org.kompose.recipe)" = "$recipe_hash" ] || return 1
  [ "$(label org.kompose.pg-major)" = "$major" ] || return 1
  [ "$(label org.kompose.pg-recipe)" = "$recipe" ] || return 1
  # Recipe B copies the host's binaries: after an apt upgrade of the host's PostgreSQL the image
  # would silently test an older point release, so it is rebuilt (a few seconds, offline).
  if [ "$recipe" = B ]; then
    [ "$(label org.kompose.pg-version)" = "$(host_pg_version)" ] || return 1
  fi
}
host_pg_version() { "$host_pg/bin/postgres" -V | awk '{print $3}'; }

# Two setup runs at once (engineers share one engine) would build the same image twice and race
# on the tag; the second one waits here and then finds the image up to date.
lock=/tmp/kompose-build-pg-image.${tag//[^A-Za-z0-9_.-]/_}.lock
if command -v flock >/dev/null 2>&1; then
  exec 9>"$lock"
  flock 9
fi

if up_to_date; then
  echo "up to date: $tag"
  exit 0
fi

SECONDS=0
work=$(mktemp -d /tmp/kompose-pg-image.XXXXXX)
rootfs=$work/rootfs
ctx=$work/context
# A name of our own for the imported rootfs, so that concurrent builds never share it.
base_tag=kompose-build/pg-rootfs:$$-$RANDOM
imported=0

cleanup() {
  local rc=$?
  # Unmount everything under the work dir (chroot's /proc, or what a failed debootstrap left)
  # before deleting it: rm -rf through a live /proc or /sys mount must never happen.
  local m
  awk -v w="$work/" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
  if awk -v w="$work/" 'index($2, w) == 1 {found=1} END {exit !found}' /proc/mounts; then
    echo "build-pg-image: $work is still mounted, left in place" >&2
  else
    rm -rf "$work"
  fi
  if [ "$imported" = 1 ]; then
    docker rmi "$base_tag" >/dev/null 2>&1 || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

apt_get_install() {  # installs host packages the recipes copy or run; updates lists only if needed
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-upgrade "$@" >/dev/null 2>&1 && return 0
  apt-get update -qq >/dev/null 2>&1 || true
  apt-get install -y -qq --no-upgrade "$@" >/dev/null 2>&1 || die "apt-get install $* failed"
}

is_static() {  # ldd says so for a static binary (and exits 1, hence no pipe here)
  local out
  out=$(ldd "$1" 2>&1 || true)
  [[ $out == *"not a dynamic executable"* ]]
}

install_entrypoint() {  # into the rootfs, not a COPY: one layer less and no build container
  mkdir -p "$rootfs/usr/local/bin" "$rootfs/docker-entrypoint-initdb.d"
  install -m 755 "$entrypoint" "$rootfs/usr/local/bin/docker-entrypoint.sh"
}

# --- recipe B: the host's binaries in a FROM-scratch image --------------------------------------
rootfs_from_host() {
  [ -x "$host_pg/bin/postgres" ] || die "PostgreSQL $major is not installed on this host (recipe B copies $host_pg)"
  local bb
  bb=$(command -v busybox || true)
  if [ -z "$bb" ] || ! is_static "$bb"; then
    apt_get_install busybox-static
    bb=/bin/busybox
    is_static "$bb" || die "no static busybox at $bb after installing busybox-static"
  fi
  echo "build-pg-image: building $tag from the host's PostgreSQL $major (recipe B)" >&2

  mkdir -p "$rootfs"/{bin,etc,root,tmp,usr/lib/locale,usr/share/postgresql} \
           "$rootfs$host_pg/lib" "$rootfs"/var/run/postgresql "$rootfs"/var/lib/postgresql/data
  chmod 1777 "$rootfs/tmp"
  cp -a "$host_pg/bin" "$rootfs$host_pg/"
  # Every extension and conversion module, but not the LLVM JIT provider: with libLLVM it is
  # about 110 MB, and without it PostgreSQL simply does not JIT.
  find "$host_pg/lib" -maxdepth 1 -name '*.so' ! -name 'llvmjit*' -exec cp -a -t "$rootfs$host_pg/lib/" {} +
  cp -a "/usr/share/postgresql/$major" "$rootfs/usr/share/postgresql/"
  cp -a /usr/share/zoneinfo "$rootfs/usr/share/"             # PostgreSQL uses the system tzdata
  if [ -d /usr/lib/locale/C.utf8 ]; then                     # initdb --locale=C.UTF-8
    cp -a /usr/lib/locale/C.utf8 "$rootfs/usr/lib/locale/"
  fi
  # The shared libraries, at the paths ldd resolves them to (the loader included), so the
  # dynamic loader finds them in its default directories without an ld.so.cache.
  local lib
  find "$rootfs$host_pg" -type f \( -perm -u+x -o -name '*.so' \) -exec ldd {} \; 2>/dev/null \
    | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u \
    | while read -r lib; do
        mkdir -p "$rootfs$(dirname "$lib")"
        cp -L "$lib" "$rootfs$lib"
      done
  [ -n "$(find "$rootfs" -name 'ld-linux*' -print -quit)" ] \
    || die "ldd named no dynamic loader; the image could not run its binaries"

  cp "$bb" "$rootfs/bin/busybox"
  local applet
  for applet in $("$bb" --list); do
    [ -e "$rootfs/bin/$applet" ] || ln -s busybox "$rootfs/bin/$applet"
  done
  # uid 999 as in the official image, so a data volume moves between the two unchanged.
  cat > "$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
postgres:x:999:999:PostgreSQL administrator:/var/lib/postgresql:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
  printf 'root:x:0:\npostgres:x:999:\nnogroup:x:65534:\n' > "$rootfs/etc/group"
  printf 'passwd: files\ngroup: files\nhosts: files dns\n' > "$rootfs/etc/nsswitch.conf"
  # initdb runs `locale -a` to fill pg_collation, and busybox has no locale applet.
  mkdir -p "$rootfs/usr/local/bin"
  cat > "$rootfs/usr/local/bin/locale" <<'EOF'
#!/bin/sh
# Stands in for `locale -a`, which initdb runs: these are the locales this image has.
[ "${1:-}" = -a ] && printf 'C\nC.utf8\nPOSIX\n'
exit 0
EOF
  chmod 755 "$rootfs/usr/local/bin/locale"
  install_entrypoint
  chown -R 999:999 "$rootfs/var/lib/postgresql" "$rootfs/var/run/postgresql"
  chmod 700 "$rootfs/var/lib/postgresql/data"
  version=$(host_pg_version)
}

# --- recipe A: a debootstrapped Debian with the distribution's postgresql-MAJOR ----------------
suite_for_major() {
  case $1 in
    13) echo bullseye ;;
    15) echo bookworm ;;
    17) echo trixie ;;
    *) return 1 ;;
  esac
}

apt_uri_for_suite() {  # the first URI in apt's configuration that serves SUITE (deb822 or one-line)
  local suite=$1 f
  {
    for f in /etc/apt/sources.list.d/*.sources; do
      [ -r "$f" ] || continue
      awk -v want="$suite" 'BEGIN {RS = ""; FS = "\n"}
        { uris = ""; suites = ""; types = ""; on = 1
          for (i = 1; i <= NF; i++) {
            line = $i
            if (line ~ /^[ \t]*#/) continue
            if (sub(/^URIs:[ \t]*/, "", line)) uris = line
            else if (sub(/^Suites:[ \t]*/, "", line)) suites = line
            else if (sub(/^Types:[ \t]*/, "", line)) types = line
            else if (line ~ /^Enabled:[ \t]*no/) on = 0
          }
          if (!on || types !~ /(^|[ \t])deb([ \t]|$)/) next
          ns = split(suites, s, /[ \t]+/)
          for (j = 1; j <= ns; j++) if (s[j] == want) {
            nu = split(uris, u, /[ \t]+/)
            for (k = 1; k <= nu; k++) if (u[k] != "") print u[k]
          }
        }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [ -r "$f" ] || continue
      awk -v want="$suite" '$1 == "deb" {
          i = 2
          if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }   # skip [options]
          if ($(i + 1) == want) print $i
        }' "$f"
    done
  } | sed 's:/*$::' | head -n1
}

rootfs_from_debootstrap() {
  local suite codename mirror secmirror
  suite=$(suite_for_major "$major") \
    || die "no Debian release ships PostgreSQL $major (13: bullseye, 15: bookworm, 17: trixie); install postgresql-$major on the host for recipe B"
  # The host's apt configuration names its mirror by the host's own suite; the same archive
  # serves the other suites too.
  codename=$(sed -n 's/^VERSION_CODENAME=//p' /etc/os-release 2>/dev/null | tr -d '"')
  mirror=${PG_IMAGE_MIRROR:-$(apt_uri_for_suite "$codename")}
  secmirror=${PG_IMAGE_SECURITY_MIRROR:-$(apt_uri_for_suite "$codename-security")}
  [ -n "$mirror" ] || die "cannot find a Debian mirror for '$codename' in /etc/apt; set PG_IMAGE_MIRROR=URL"
  command -v debootstrap >/dev/null 2>&1 || apt_get_install debootstrap
  echo "build-pg-image: building $tag: PostgreSQL $major from Debian $suite via debootstrap (recipe A, about a minute)" >&2

  debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 30 "$work/debootstrap.log" >&2; die "debootstrap $suite from $mirror failed"; }
  {
    echo "deb $mirror $suite main"
    echo "deb $mirror $suite-updates main"
    # The security suite has the latest point release (15.20 where bookworm itself has 15.18).
    if [ -n "$secmirror" ]; then echo "deb $secmirror $suite-security main"; fi
  } > "$rootfs/etc/apt/sources.list"
  # The package's postinst would start a server in the chroot; policy-rc.d forbids it.
  printf '#!/bin/sh\nexit 101\n' > "$rootfs/usr/sbin/policy-rc.d"
  chmod 755 "$rootfs/usr/sbin/policy-rc.d"
  mount -t proc proc "$rootfs/proc"
  # shellcheck disable=SC2016  # expanded by the chroot's shell, with the major as $1
  chroot "$rootfs" /bin/sh -eu -c '
    export DEBIAN_FRONTEND=noninteractive LC_ALL=C
    apt-get -q update
    apt-get -q install -y --no-install-recommends "postgresql-$1"
    # The package creates a cluster "main"; the entrypoint makes its own in PGDATA.
    pg_dropcluster "$1" main 2>/dev/null || true
    rm -rf "/var/lib/postgresql/$1" "/etc/postgresql/$1"
    # JIT provider and LLVM (about 110 MB) are optional: PostgreSQL just does not JIT.
    rm -rf /usr/lib/postgresql/$1/lib/llvmjit* "/usr/lib/postgresql/$1/lib/bitcode"
    dpkg-query -W -f "\${Package}\n" | grep -E "^(libllvm|libz3-)" | xargs -r dpkg --purge --force-depends
    apt-get clean
    mkdir -p /var/lib/postgresql/data /var/run/postgresql
    chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql
    chmod 700 /var/lib/postgresql/data
  ' sh "$major" >"$work/install.log" 2>&1 \
    || { tail -n 30 "$work/install.log" >&2; die "installing postgresql-$major in the $suite chroot failed"; }
  version=$(chroot "$rootfs" "/usr/lib/postgresql/$major/bin/postgres" -V | awk '{print $3}')
  umount "$rootfs/proc"
  # The image keeps no apt sources or lists: apt in it is not meant to be used (libLLVM was
  # removed against the dependencies). Docker provides hostname, hosts and resolv.conf.
  rm -f "$rootfs/usr/sbin/policy-rc.d" "$rootfs/etc/apt/sources.list" "$rootfs/etc/hostname" \
        "$rootfs/etc/resolv.conf"
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/log/*.log \
         "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
         "$rootfs"/usr/share/locale/* "$rootfs"/tmp/*
  install_entrypoint
}

version=
if [ "$recipe" = B ]; then rootfs_from_host; else rootfs_from_debootstrap; fi
[ -n "$version" ] || die "could not read the PostgreSQL version of the built rootfs"

# docker's own /dev, /proc and /sys replace these at run time.
tar -C "$rootfs" --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -cf - . \
  | docker import - "$base_tag" >/dev/null
imported=1
rm -rf "$rootfs"

mkdir -p "$ctx"
cat > "$ctx/Dockerfile" <<EOF
FROM $base_tag
ENV PATH=/usr/lib/postgresql/$major/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    PGDATA=/var/lib/postgresql/data \\
    LANG=C.UTF-8
LABEL org.kompose.recipe="$recipe_hash" \\
      org.kompose.pg-recipe="$recipe" \\
      org.kompose.pg-major="$major" \\
      org.kompose.pg-version="$version"
VOLUME /var/lib/postgresql/data
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
EOF
old_id=$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)
# The legacy builder uses the imported image as it is, where BuildKit might look for a registry;
# this engine has no buildx anyway.
DOCKER_BUILDKIT=0 docker build -q -t "$tag" "$ctx" >"$work/build.log" 2>&1 \
  || { cat "$work/build.log" >&2; die "docker build of $tag failed"; }
new_id=$(docker image inspect -f '{{.Id}}' "$tag")
# The image this tag named before is ours and now unused; drop it (docker refuses while a
# container or another tag still uses it, which is fine).
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
  docker rmi "$old_id" >/dev/null 2>&1 || true
fi
echo "built $tag (PostgreSQL $version, recipe $recipe, $SECONDS s)"
