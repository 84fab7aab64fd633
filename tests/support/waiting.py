"""The one deadline wait of the tests (docs/style.md rule 7, docs/testing.md).

Used only where no event can tell the test that something happened: state owned by another
process (a server's port, a database row, a metrics page). Every wait has a deadline and says
what it waited for; with ``log_path`` the failure carries the tail of that process's log.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path


class WaitTimeout(AssertionError):
    """The deadline passed (or the process waited on died) before the condition held."""


def log_tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a log file ("" when it cannot be read)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def log_tail_message(path: Path | None) -> str:
    """`log_tail` as the end of an error message ("" without a log)."""
    if path is None:
        return ""
    tail = log_tail(path)
    return f"\n--- last lines of {path} ---\n{tail}" if tail else f" (log {path} is empty)"


def wait_until(
    condition: Callable[[], bool],
    timeout_s: float,
    what: str,
    *,
    alive: Callable[[], bool] | None = None,
    log_path: Path | None = None,
    max_step_s: float = 0.05,
) -> None:
    """Return once `condition()` holds; raise WaitTimeout at the deadline or as soon as
    `alive()` turns false (the process died: waiting longer cannot help).

    The checks start 10 ms apart and grow to `max_step_s`: 50 ms by default, so a time the
    test measures around the wait (a recovery, a failover) is at most that much late."""
    deadline = time.monotonic() + timeout_s
    delay_s = min(0.01, max_step_s)
    while True:
        if condition():
            return
        if alive is not None and not alive():
            raise WaitTimeout(f"{what}: the process exited{log_tail_message(log_path)}")
        if time.monotonic() >= deadline:
            raise WaitTimeout(
                f"timed out after {timeout_s:g} s waiting for {what}{log_tail_message(log_path)}")
        # A short back-off growing to max_step_s: servers here answer in tens of milliseconds
        # to a few seconds, and nothing announces "a port is listening" or "a row is there".
        time.sleep(delay_s)
        delay_s = min(delay_s * 2, max_step_s)
