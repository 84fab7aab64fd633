"""Numbered schema migrations for the SQL stores.

One flat directory of files named ``NNNN_name.FLAVOR.sql``. A flavor is what the database
turned out to be at migrate time:

- ``sqlite``: the embedded store;
- ``postgresql``: plain PostgreSQL;
- ``timescaledb``: PostgreSQL with the TimescaleDB extension, Apache license (Debian's
  package): hypertables, ``time_bucket``, ``drop_chunks``; rollups are ours;
- ``timescaledb_tsl``: the same under the Timescale license, which adds continuous aggregates.

For each version the most specific file wins: ``timescaledb_tsl`` falls back to
``timescaledb``, which falls back to ``postgresql``; ``sqlite`` stands alone. So a version
that needs nothing special is written once. Applied versions are recorded in
``schema_migrations`` (version, name, flavor, applied_at); every file is also idempotent
DDL (``IF NOT EXISTS``, ``CREATE OR REPLACE``) so that a half-recorded state cannot hurt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Literal

Flavor = Literal["sqlite", "postgresql", "timescaledb", "timescaledb_tsl"]

_CHAINS: dict[Flavor, tuple[Flavor, ...]] = {
    "sqlite": ("sqlite",),
    "postgresql": ("postgresql",),
    "timescaledb": ("timescaledb", "postgresql"),
    "timescaledb_tsl": ("timescaledb_tsl", "timescaledb", "postgresql"),
}

_FILE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.(?P<flavor>[a-z_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    flavor: Flavor  # the flavor of the file chosen (may be a fallback of the target)
    sql: str


def migrations_for(flavor: Flavor) -> list[Migration]:
    """The migrations of ``flavor`` in version order, each from its most specific file."""
    chain = _CHAINS[flavor]
    found: dict[int, dict[str, tuple[str, str]]] = {}
    for entry in resources.files(__package__).iterdir():
        m = _FILE.match(entry.name)
        if m is None:
            continue
        version = int(m["version"])
        found.setdefault(version, {})[m["flavor"]] = (m["name"], entry.read_text("utf-8"))
    out: list[Migration] = []
    for version in sorted(found):
        files = found[version]
        unknown = set(files) - set(_CHAINS)
        if unknown:
            raise ValueError(f"migration {version:04d}: unknown flavor(s) {sorted(unknown)}")
        pg_names = {name for f, (name, _) in files.items() if f != "sqlite"}
        if len(pg_names) > 1:
            raise ValueError(f"migration {version:04d}: flavors disagree on the name: {sorted(pg_names)}")
        for candidate in chain:
            if candidate in files:
                name, text = files[candidate]
                out.append(Migration(version, name, candidate, text))
                break
    return out
