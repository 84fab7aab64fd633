"""Numbered migrations of the ops center's own tables, ``NNNN_name.FLAVOR.sql`` with flavor
``sqlite`` or ``postgresql`` (TimescaleDB needs nothing special for these tables). Applied
versions are recorded in ``ops_schema_migrations`` (version, name, applied_at), separate
from the ingest's ``schema_migrations``: the two components migrate independently. Every
file is idempotent DDL as well."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Literal

Flavor = Literal["sqlite", "postgresql"]
TABLE = "ops_schema_migrations"

_FILE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.(?P<flavor>sqlite|postgresql)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations_for(flavor: Flavor) -> list[Migration]:
    out: list[Migration] = []
    for entry in resources.files(__package__).iterdir():
        m = _FILE.match(entry.name)
        if m is not None and m["flavor"] == flavor:
            out.append(Migration(int(m["version"]), m["name"], entry.read_text("utf-8")))
    out.sort(key=lambda mig: mig.version)
    versions = [mig.version for mig in out]
    if len(set(versions)) != len(versions):
        raise ValueError(f"duplicate ops migration versions for {flavor}: {versions}")
    return out
