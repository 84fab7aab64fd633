#!/usr/bin/env bash
# Builds, once, a minimal Debian 13 ("trixie") root holding PostgreSQL 17 with TimescaleDB
# (Apache edition, Debian's postgresql-17-timescaledb) and pg_auto_failover
# (postgresql-17-auto-failover: the failover of docs/reliability.md H2), for Debian 12 hosts
# where TimescaleDB is not packaged. tests/servers/timescale.py runs its server inside this root through
# scripts/in-timescaledb-root.sh. On Debian 13 install the package instead; this is not needed.
#
# The root is cached outside the work tree (about 1 minute to build, reused afterwards):
#   ${SMARTWARD_CACHE:-/var/cache/smartward}/trixie-timescaledb
# It is complete only when it holds .smartward-complete: the build happens in a side
# directory that is renamed into place at the end, under a lock so two runs never build twice.
set -euo pipefail

cache="${SMARTWARD_CACHE:-/var/cache/smartward}"
root="$cache/trixie-timescaledb"
marker="$root/.smartward-complete"
# Packages added to the root after its first release: a root built before them gets them
# installed in place (ensure_extras below) instead of a rebuild.
extras=(postgresql-17-auto-failover)

log() { printf 'timescaledb-root: %s\n' "$*" >&2; }

extras_present() {
    local p
    for p in "${extras[@]}"; do
        chroot "$root" dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || return 1
    done
}

# Installs the extras into a complete root, under the same lock as the build. A private
# mount namespace gives apt's maintainer scripts a /proc that vanishes with them.
ensure_extras() {
    if extras_present; then
        return 0
    fi
    if [ "$(id -u)" -ne 0 ]; then
        log "must run as root to add ${extras[*]} to $root"
        exit 1
    fi
    exec 9>"$cache/trixie-timescaledb.lock"
    flock 9
    if extras_present; then
        return 0
    fi
    log "adding ${extras[*]} to $root"
    unshare --mount --propagation private /bin/sh -euc '
        root=$1; shift
        mount -t proc proc "$root/proc"
        chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
            /bin/sh -euc "apt-get update -q && apt-get install -y -q --no-install-recommends \"\$@\" && apt-get clean" sh "$@"
    ' sh "$root" "${extras[@]}" >>"$cache/trixie-timescaledb.build.log" 2>&1 || {
        log "installing ${extras[*]} failed; last lines of $cache/trixie-timescaledb.build.log:"
        tail -n 30 "$cache/trixie-timescaledb.build.log" >&2
        exit 1
    }
    # The package's post-install may create a default cluster; the fixtures create their own.
    rm -rf "$root/var/lib/postgresql/17/main" "$root/etc/postgresql/17/main"
    chroot "$root" dpkg-query -W "${extras[@]}" >&2
}

if [ -f "$marker" ]; then
    ensure_extras
    log "present: $root"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    log "must run as root (debootstrap, chroot)"
    exit 1
fi

mkdir -p "$cache"
exec 9>"$cache/trixie-timescaledb.lock"
flock 9
# Another run may have finished the build while we waited for the lock.
if [ -f "$marker" ]; then
    ensure_extras
    log "present: $root"
    exit 0
fi

partial="$root.partial"
# --one-file-system: never descend into a /proc or /dev left mounted by an interrupted build.
rm -rf --one-file-system "$partial" "$root"
log "building $root (debootstrap trixie, about a minute)"
started=$SECONDS
# A private mount namespace: the /proc and /sys that debootstrap mounts in the target vanish
# with it, even if the build is interrupted. The default mirror of debootstrap is used.
unshare --mount --propagation private \
    debootstrap --variant=minbase --include="postgresql-17-timescaledb,$(IFS=,; echo "${extras[*]}")" trixie "$partial" \
    >"$cache/trixie-timescaledb.build.log" 2>&1 || {
        log "debootstrap failed; last lines of $cache/trixie-timescaledb.build.log:"
        tail -n 30 "$cache/trixie-timescaledb.build.log" >&2
        exit 1
    }

# The package's post-install creates a default cluster; the fixtures create their own.
rm -rf "$partial/var/lib/postgresql/17/main" "$partial/etc/postgresql/17/main"
# Mount point for the host directory that holds a test server's data, socket and log.
mkdir -p "$partial/srv/smartward"
# Space: package archives are not needed once installed.
rm -f "$partial"/var/cache/apt/archives/*.deb

chroot "$partial" dpkg-query -W postgresql-17 postgresql-17-timescaledb "${extras[@]}" >"$partial/.smartward-complete.tmp"
mv "$partial/.smartward-complete.tmp" "$partial/.smartward-complete"
mv "$partial" "$root"
log "built in $((SECONDS - started)) s: $(tr '\n' ' ' <"$marker")"
