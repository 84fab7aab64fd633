#!/usr/bin/env bash
# The project's test command (the one the README gives):
#
#   scripts/test.sh                          # everything
#   scripts/test.sh tests/integration -k timescale   # extra arguments go to pytest
#
# It installs what the tests need (fast when already there), then runs the linters and the
# tests. Integration tests start their own servers on free ports (tests/servers/); with
# CI=true a server that cannot be started fails the run instead of skipping its tests.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
scripts/install-test-deps.sh
python="$(scripts/python-env.sh)"  # the interpreter install-test-deps.sh installed into

# Every stage runs even when an earlier one fails, so one CI run shows every problem;
# the exit status is pytest's, or 1 when only a linter failed.
failed=()
echo "== ruff check" >&2
"$python" -m ruff check . || failed+=(ruff)
echo "== mypy" >&2
"$python" -m mypy || failed+=(mypy)  # packages and strictness come from pyproject.toml
echo "== pytest" >&2
# -ra: list skips and failures at the end, so a skipped server is never unnoticed.
# --timeout: a hung test fails with a traceback instead of eating the CI budget.
# --durations: the slowest tests, to keep the run within its time budget.
status=0
# -n: two pytest workers (pytest-xdist), one per core; --dist loadfile keeps a module's tests,
# and its servers, in one worker. Most tests wait on real servers, so two run in about half
# the time (SMARTWARD_TEST_WORKERS=0 runs them in this process, one after the other).
workers="${SMARTWARD_TEST_WORKERS:-2}"
parallel=()
if [ "$workers" != 0 ]; then
    parallel=(-n "$workers" --dist loadfile)
fi
"$python" -m pytest -q -ra "${parallel[@]}" --timeout="${SMARTWARD_TEST_TIMEOUT_S:-300}" --durations=15 "$@" || status=$?
if [ "$status" -eq 5 ]; then
    # pytest's "no tests collected" is exit 5: a wrong path or a broken collection, not a pass.
    echo "scripts/test.sh: pytest collected no tests" >&2
fi
if [ "$status" -ne 0 ]; then
    failed+=("pytest (exit $status)")
fi
if [ "${#failed[@]}" -gt 0 ]; then
    echo "scripts/test.sh: FAILED: ${failed[*]}" >&2
    if [ "$status" -eq 0 ]; then
        status=1
    fi
fi
exit "$status"
