#!/usr/bin/env bash
# Prints the Python interpreter that installs and runs the project's tests, so that
# install-test-deps.sh and test.sh agree on it:
#   - $PYTHON when set;
#   - else python3, when it may take pip installs (a virtualenv, pyenv, a container image);
#   - else <repo>/.venv/bin/python: Debian's own python3 is "externally managed" (PEP 668)
#     and refuses pip, so a fresh Debian machine gets a virtualenv in the work tree
#     (git-ignored), created by install-test-deps.sh.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -n "${PYTHON:-}" ]; then
    echo "$PYTHON"
elif python3 -c 'import os, sys, sysconfig
managed = os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED"))
sys.exit(1 if managed and sys.prefix == sys.base_prefix else 0)'; then
    echo python3
else
    echo "$repo/.venv/bin/python"
fi
