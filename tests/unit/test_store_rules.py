"""The pure rules behind every store: write plans, conflicts, migration files."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from ingest.errors import StoreUnavailable
from ingest.migrations import migrations_for
from ingest.stores import writeplan
from tests.unit.test_store_contract import GW, T0, at, batch, letter


def test_claims_keep_the_first_occurrence_of_each_seq() -> None:
    one = batch(1, ("tn-aq-01", "pm25", 0, 1.0))
    two = batch(2, ("tn-aq-01", "pm25", 60, 1.0))
    plan = writeplan.plan_write([one, one, two], [letter(3), letter(None)])
    assert [c.key for c in plan.claims] == [(GW, 1), (GW, 2), (GW, 3)]
    assert [c.outcome for c in plan.claims] == ["stored", "stored", "dead_letter"]
    assert plan.claims[0].digest == writeplan.payload_digest(one.raw)
    assert len(plan.items) == 5


def test_settle_sorts_new_duplicate_and_conflicting_items() -> None:
    first = batch(1, ("tn-aq-01", "pm25", 0, 1.0))
    other_bytes = batch(1, ("tn-aq-01", "pm25", 0, 2.0))
    old = batch(7, ("tn-aq-01", "pm25", 0, 1.0))
    plan = writeplan.plan_write([first, first, other_bytes, old], [])
    settled = writeplan.settle(plan, {(GW, 1)}, {(GW, 7): writeplan.Previous("stored", b"x" * 16)})
    assert settled.store == [first]
    assert settled.duplicates == 1
    assert [(d.reason, d.seq) for d in settled.letters] == [("conflict", 1), ("conflict", 7)]
    assert "already handled (stored)" in settled.letters[1].detail
    assert settled.handled == [(GW, 1), (GW, 7)]


def test_a_refused_claim_without_a_visible_row_is_retried() -> None:
    plan = writeplan.plan_write([batch(1, ("tn-aq-01", "pm25", 0, 1.0))], [])
    with pytest.raises(StoreUnavailable):
        writeplan.settle(plan, set(), {})


def test_reading_conflicts_within_one_batch_and_across_batches() -> None:
    self_clash = batch(1, ("tn-aq-01", "pm25", 0, 1.0), ("tn-aq-01", "pm25", 0, 2.0))
    repeat_same = batch(2, ("tn-aq-01", "pm25", 60, 1.0), ("tn-aq-01", "pm25", 60, 1.0))
    later_clash = batch(3, ("tn-aq-01", "pm25", 60, 5.0))
    stored_clash = batch(4, ("tn-aq-01", "pm10", 0, 9.0, "suspect"))
    found = writeplan.reading_conflicts(
        [self_clash, repeat_same, later_clash, stored_clash],
        {("tn-aq-01", "pm10", T0): (9.0, "good")})
    assert sorted(found) == [0, 2, 3]
    assert found[3].detail == ("1 reading(s) conflict with stored values; first: tn-aq-01/pm10 at "
                               f"{T0.isoformat()}: stored 9.0 (good), sent 9.0 (suspect)")
    assert found[2].payload == later_clash.raw
    assert at(60) > T0


def test_every_flavor_has_every_migration_with_one_name_per_version() -> None:
    names = {f: [(m.version, m.name) for m in migrations_for(f)]
             for f in ("sqlite", "postgresql", "timescaledb", "timescaledb_tsl")}
    assert names["postgresql"] == [(1, "registry"), (2, "readings"), (3, "ingest"), (4, "rollups"),
                                  (5, "dead_letter_once"), (6, "unsequenced_stream")]
    assert names["sqlite"] == names["postgresql"] == names["timescaledb"] == names["timescaledb_tsl"]
    chosen = {f: [m.flavor for m in migrations_for(f)] for f in ("timescaledb", "timescaledb_tsl")}
    assert chosen["timescaledb"] == ["postgresql", "timescaledb", "postgresql", "postgresql", "postgresql",
                                     "postgresql"]
    assert chosen["timescaledb_tsl"] == ["postgresql", "timescaledb", "postgresql", "timescaledb_tsl",
                                         "postgresql", "postgresql"]


def test_migration_files_are_numbered_and_idempotent_ddl() -> None:
    files = [e for e in resources.files("ingest.migrations").iterdir() if e.name.endswith(".sql")]
    assert files
    for entry in files:
        flavors = "sqlite|postgresql|timescaledb|timescaledb_tsl"
        assert re.fullmatch(rf"\d{{4}}_[a-z0-9_]+\.({flavors})\.sql", entry.name)
        text = entry.read_text("utf-8")
        for statement in re.findall(r"^CREATE\b[^(;]*", text, flags=re.MULTILINE):
            assert re.search(r"IF NOT EXISTS|OR REPLACE", statement), (entry.name, statement)
