#!/usr/bin/env bash
# Runs a command as the `postgres` user inside the TimescaleDB root built by
# scripts/timescaledb-root.sh, with a host directory mounted at /srv/smartward:
#
#   scripts/in-timescaledb-root.sh HOST_DIR COMMAND [ARGS...]
#   scripts/in-timescaledb-root.sh /tmp/ts /usr/lib/postgresql/17/bin/pg_ctl -D /srv/smartward/data status
#
# tests/servers/timescale.py uses it for initdb and pg_ctl; a postmaster started through it
# keeps listening on a loopback port of the host (no network namespace). Must run as root.
set -euo pipefail

if [ "$#" -lt 2 ]; then
    echo "usage: $0 HOST_DIR COMMAND [ARGS...]" >&2
    exit 2
fi
cache="${SMARTWARD_CACHE:-/var/cache/smartward}"
root="$cache/trixie-timescaledb"
if [ ! -f "$root/.smartward-complete" ]; then
    echo "$0: no TimescaleDB root at $root; run scripts/install-test-deps.sh" >&2
    exit 1
fi
host_dir="$(realpath "$1")"
shift

# The root's own postgres user, by number: the host's may differ or not exist.
ids="$(awk -F: '$1 == "postgres" { print $3 ":" $4 }' "$root/etc/passwd")"
mkdir -p "$host_dir"
chown "$ids" "$host_dir"

# A private mount namespace per call: the binds below disappear when the last process in it
# exits (for `pg_ctl start`, the postmaster), so nothing stays mounted on the host, even
# after a crash. /dev is bound recursively for /dev/shm (PostgreSQL's dynamic shared memory).
# The environment is cleared: the host's PATH, locale and PG* variables mean nothing inside.
exec unshare --mount --propagation private -- /bin/sh -euc '
    root=$1 host_dir=$2 ids=$3
    shift 3
    mount --rbind /dev "$root/dev"
    mount --bind /proc "$root/proc"
    mount --bind "$host_dir" "$root/srv/smartward"
    exec chroot --userspec="$ids" "$root" /usr/bin/env -i \
        PATH=/usr/lib/postgresql/17/bin:/usr/bin:/bin LANG=C.UTF-8 HOME=/srv/smartward \
        /bin/sh -c "cd /srv/smartward && exec \"\$@\"" sh "$@"
' sh "$root" "$host_dir" "$ids" "$@"
