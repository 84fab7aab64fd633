#!/usr/bin/env bash
# The project's demo command (the one the README gives first):
#
#   scripts/demo.sh                    # runs until Ctrl-C
#   scripts/demo.sh --duration 120     # extra arguments go to `smartward demo`
#
# Needs only Python 3.11+: it installs smartward with the `demo` extra (embedded MQTT broker,
# SQLite store, simulated sites) and runs `smartward demo`. No server is installed or started.
# On Debian's own python3 (PEP 668 "externally managed") it uses a git-ignored .venv.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
python="$(scripts/python-env.sh)"
if [ "$python" = "$repo/.venv/bin/python" ] && [ ! -x "$python" ]; then
    python3 -m venv "$repo/.venv" || {
        echo "scripts/demo.sh: cần python3-venv / needs python3-venv: apt-get install python3-venv" >&2
        exit 1
    }
fi
# Install once; reinstall only when pyproject.toml changed since the last install.
stamp="$repo/.venv-demo-stamp"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || ! "$python" -c 'import smartward, amqtt' 2>/dev/null; then
    "$python" -m pip install -q -e "$repo[demo]"
    touch "$stamp"
fi
exec "$python" -m smartward.cli demo "$@"
