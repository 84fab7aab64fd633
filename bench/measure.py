"""What every benchmark measures the same way: percentiles, CPU seconds from ``/proc``, free
loopback ports and readiness (docs/performance.md)."""

from __future__ import annotations

import contextlib
import os
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile (NaN without values)."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one live process (NaN once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK
    except (OSError, IndexError, ValueError):
        return float("nan")


def postgres_cpu(postmaster: int | None = None) -> float:
    """CPU seconds of the server under test: with a private server its postmaster (including
    the children it has reaped) and its live children; otherwise every local process named
    postgres (other local servers' load counts too then)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if "(postgres)" not in text:
            continue
        fields = text.rsplit(")", 1)[1].split()
        pid, ppid = int(stat.parent.name), int(fields[1])
        if postmaster is None:
            total += (int(fields[11]) + int(fields[12])) / _CLK_TCK
        elif pid == postmaster:
            total += sum(int(f) for f in fields[11:15]) / _CLK_TCK
        elif ppid == postmaster:
            total += (int(fields[11]) + int(fields[12])) / _CLK_TCK
    return total


def free_port() -> int:
    """A loopback TCP port nobody listens on now (the kernel picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout_s: float) -> None:
    """Return once a local port accepts connections; a child's port has no event to wait on."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"port {port} did not open")


def metrics_ready(port: int) -> bool:
    """Whether a process's metrics server on ``port`` answers ``/readyz`` with 200."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


# --- CPU accounting (Linux /proc) ----------------------------------------------------------------


def tree_cpu_s(root: int) -> float:
    """User + system CPU seconds of ``root`` and its descendants now alive (0 without /proc)."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in _proc_entries():
        try:
            raw = (Path("/proc") / entry / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        stats[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / _CLK_TCK)
    wanted = {root}
    changed = True
    while changed:
        changed = False
        for pid, (ppid, _) in stats.items():
            if ppid in wanted and pid not in wanted:
                wanted.add(pid)
                changed = True
    return sum(cpu for pid, (_, cpu) in stats.items() if pid in wanted)


def _proc_entries() -> Iterator[str]:
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                yield entry


def machine_busy_s() -> tuple[float, float]:
    """(busy CPU seconds, total CPU seconds) of the whole machine, from /proc/stat."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0.0, 0.0
    v = [int(x) for x in first]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    total = sum(v[:8])
    return (total - idle) / _CLK_TCK, total / _CLK_TCK
