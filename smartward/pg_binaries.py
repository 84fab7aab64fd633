"""Where the host's PostgreSQL programs are (Debian layout: /usr/lib/postgresql/<major>/bin),
for the private servers the benchmarks (bench/pgserver.py) and the test fixtures
(tests/servers/postgres.py, timescale.py) start."""

from __future__ import annotations

import os
from pathlib import Path

_LIB = Path("/usr/lib/postgresql")


def host_bindir() -> Path | None:
    """The newest PostgreSQL installed on the host, or ``SMARTWARD_PG_BINDIR``."""
    override = os.environ.get("SMARTWARD_PG_BINDIR")
    if override:
        return Path(override) if (Path(override) / "initdb").exists() else None
    found = sorted(
        _LIB.glob("*/bin/initdb"),
        key=lambda initdb: int(initdb.parent.parent.name) if initdb.parent.parent.name.isdigit() else 0,
    )
    return found[-1].parent if found else None


def native_timescale_bindir() -> Path | None:
    """A host PostgreSQL that has the timescaledb extension installed."""
    controls = Path("/usr/share/postgresql").glob("*/extension/timescaledb.control")
    for control in sorted(controls, reverse=True):
        bindir = _LIB / control.parent.parent.name / "bin"
        if (bindir / "initdb").exists():
            return bindir
    return None
