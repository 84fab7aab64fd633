"""The behaviour every Store shows (docs/contract.md, docs/reliability.md promises 1-3), as one suite.

``StoreContract`` is run here over ``MemoryStore`` and ``SqliteStore``, and by
tests/integration/test_store_contract_sql.py over PostgreSQL and TimescaleDB: the same
tests, a different ``store`` fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from contract.codec import encode
from contract.models import Reading, TelemetryBatch
from ingest.ports import DeadLetter, ValidBatch
from ingest.retention import RetentionPolicy, apply_retention
from ingest.stores.memory import MemoryStore
from ingest.stores.sqlite import SqliteStore

T0 = datetime(2026, 11, 28, 5, 0, tzinfo=UTC)
SITE = "thong-nhat"
GW = "tn-gw-01"
TOPIC = f"smartward/v1/{SITE}/{GW}/telemetry"
LONG_AGO = T0 - timedelta(days=365)
LATER = T0 + timedelta(days=365)

# What is left of the demo registry after city staff removed all but one sensor.
ONE_SENSOR_REGISTRY = """
version: 1
sites:
  - id: thong-nhat
    name: {vi: "Phường Thống Nhất", en: "Thong Nhat ward"}
    kind: ward
    location: {lat: 20.44, lon: 106.168}
    gateways:
      - id: tn-gw-01
        sensors:
          - {id: tn-aq-01, kind: air_quality, attrs: {zone: truong-hoc}}
"""


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def batch(seq: int, *readings: tuple[Any, ...], gateway: str = GW, site: str = SITE,
          sent_at: datetime = T0) -> ValidBatch:
    """A valid batch; each reading is (sensor, metric, seconds after T0, value[, quality])."""
    rs = [Reading(sensor=r[0], metric=r[1], ts=at(r[2]), value=float(r[3]),
                  **({"quality": r[4]} if len(r) > 4 else {})) for r in readings]
    b = TelemetryBatch(v=1, gateway=gateway, seq=seq, sent_at=sent_at, readings=rs)
    return ValidBatch(site=site, topic=f"smartward/v1/{site}/{gateway}/telemetry", received_at=sent_at,
                      batch=b, raw=encode(b))


def senml(*readings: tuple[Any, ...], received_at: datetime = T0) -> ValidBatch:
    """An unsequenced batch, as ``ingest/senml.py`` makes of a SenML message (no seq)."""
    rs = [Reading(sensor=r[0], metric=r[1], ts=at(r[2]), value=float(r[3])) for r in readings]
    b = TelemetryBatch(v=1, gateway=GW, seq=0, sent_at=received_at, readings=rs)
    return ValidBatch(site=SITE, topic=f"smartward/v1/{SITE}/{GW}/senml", received_at=received_at,
                      batch=b, raw=repr(readings).encode(), sequenced=False)


def mirrored(store: Any, name: str = "influx") -> list[tuple[datetime, str, float]]:
    """What a mirror named ``name`` reads from its checkpoint on (and moves it)."""
    seen: list[tuple[datetime, str, float]] = []
    checkpoint = store.mirror_checkpoint(name)
    for _ in range(100):
        page = store.read_since(checkpoint, 3)
        seen.extend((r.time, r.metric, r.value) for r in page.rows)
        if page.checkpoint == checkpoint:
            break
        checkpoint = page.checkpoint
        store.save_mirror_checkpoint(name, checkpoint)
    return sorted(seen)


def letter(seq: int | None, payload: bytes = b'{"v": 1, "gateway": "tn-gw-01", "seq"', *,
           reason: Any = "schema") -> DeadLetter:
    return DeadLetter(received_at=T0, topic=TOPIC, reason=reason, detail="test", payload=payload,
                      gateway=GW if seq is not None else None, site=SITE, seq=seq)


def refresh(store: Any) -> None:
    while store.refresh_rollups(max_rows=1000):
        pass


def values(store: Any, sensor: str = "tn-aq-01", metric: str = "pm25") -> list[tuple[datetime, float, str]]:
    return [(r.time, r.value, r.quality) for r in store.query_readings(sensor, metric, LONG_AGO, LATER)]


class StoreContract:
    """Subclasses provide a ``store`` fixture: a migrated, empty store."""

    def test_store_keeps_readings_with_site_and_gateway_and_reports_handled(self, store: Any) -> None:
        b = batch(1, ("tn-aq-01", "pm25", 0, 41.5), ("tn-aq-01", "pm10", 0, 70.2, "suspect"))
        r = store.write([b], [])
        assert (r.stored_batches, r.stored_readings, r.duplicate_batches) == (1, 2, 0)
        assert r.handled == [(GW, 1)]
        assert r.dead_letters == []
        rows = store.query_readings("tn-aq-01", "pm10", LONG_AGO, LATER)
        assert [(x.time, x.site, x.gateway, x.sensor, x.metric, x.value, x.quality) for x in rows] == [
            (T0, SITE, GW, "tn-aq-01", "pm10", 70.2, "suspect")]
        assert store.batch_outcomes(GW) == {1: "stored"}

    def test_redelivered_batch_is_a_no_op(self, store: Any) -> None:
        b = batch(1, ("tn-aq-01", "pm25", 0, 41.5))
        store.write([b], [])
        again = store.write([b], [])
        assert (again.stored_batches, again.stored_readings, again.duplicate_batches) == (0, 0, 1)
        assert again.handled == [(GW, 1)]
        twice_in_one_call = store.write([batch(2, ("tn-aq-01", "pm25", 60, 1.0))] * 2, [])
        assert (twice_in_one_call.stored_batches, twice_in_one_call.duplicate_batches) == (1, 1)
        assert twice_in_one_call.handled == [(GW, 2)]
        assert len(values(store)) == 2
        assert store.dead_letter_rows() == []

    def test_same_seq_with_other_bytes_is_a_conflict_dead_letter_not_a_silent_drop(self, store: Any) -> None:
        store.write([batch(1, ("tn-aq-01", "pm25", 0, 41.5))], [])
        resend = batch(1, ("tn-aq-01", "pm25", 60, 99.0))  # an edge that started its seqs again
        r = store.write([resend], [])
        assert (r.stored_batches, r.duplicate_batches) == (0, 0)
        assert r.handled == [(GW, 1)]
        assert [(d.reason, d.seq, d.payload) for d in r.dead_letters] == [("conflict", 1, resend.raw)]
        assert values(store) == [(T0, 41.5, "good")]
        (row,) = store.dead_letter_rows()
        assert (row.letter.reason, row.letter.gateway, row.letter.payload) == ("conflict", GW, resend.raw)

    def test_reading_that_contradicts_a_stored_one_dead_letters_its_whole_batch(self, store: Any) -> None:
        store.write([batch(1, ("tn-aq-01", "pm25", 0, 41.5))], [])
        clash = batch(2, ("tn-aq-01", "pm25", 60, 40.0), ("tn-aq-01", "pm25", 0, 42.0))
        fine = batch(3, ("tn-aq-01", "pm25", 120, 43.0))
        r = store.write([clash, fine], [])
        assert (r.stored_batches, r.stored_readings) == (1, 1)
        assert r.handled == [(GW, 2), (GW, 3)]
        assert [(d.reason, d.seq, d.payload) for d in r.dead_letters] == [("conflict", 2, clash.raw)]
        assert "tn-aq-01/pm25" in r.dead_letters[0].detail
        # Nothing of the conflicting batch is stored, not even its new reading at +60 s.
        assert values(store) == [(T0, 41.5, "good"), (at(120), 43.0, "good")]
        assert store.batch_outcomes(GW) == {1: "stored", 2: "dead_letter", 3: "stored"}

    def test_quality_change_is_a_conflict_too(self, store: Any) -> None:
        store.write([batch(1, ("tn-aq-01", "pm25", 0, 41.5))], [])
        r = store.write([batch(2, ("tn-aq-01", "pm25", 0, 41.5, "bad"))], [])
        assert [d.reason for d in r.dead_letters] == ["conflict"]
        assert values(store) == [(T0, 41.5, "good")]

    def test_batches_of_one_call_that_contradict_each_other_keep_the_first(self, store: Any) -> None:
        first = batch(1, ("tn-aq-01", "pm25", 0, 1.0))
        second = batch(2, ("tn-aq-01", "pm25", 0, 2.0), ("tn-aq-01", "pm10", 0, 5.0))
        r = store.write([first, second], [])
        assert (r.stored_batches, r.stored_readings) == (1, 1)
        assert [d.seq for d in r.dead_letters] == [2]
        assert values(store) == [(T0, 1.0, "good")]
        assert values(store, metric="pm10") == []

    def test_same_reading_under_a_new_seq_is_stored_once_without_conflict(self, store: Any) -> None:
        store.write([batch(1, ("tn-aq-01", "pm25", 0, 41.5))], [])
        r = store.write([batch(2, ("tn-aq-01", "pm25", 0, 41.5), ("tn-aq-01", "pm25", 60, 42.0))], [])
        assert (r.stored_batches, r.stored_readings, r.dead_letters) == (1, 1, [])
        assert values(store) == [(T0, 41.5, "good"), (at(60), 42.0, "good")]

    def test_dead_letters_keep_raw_bytes_and_mark_their_seq_handled(self, store: Any) -> None:
        bad = letter(5, b"\xff\xfe not json")
        anonymous = letter(None, b"garbage", reason="bad_json")
        r = store.write([], [bad, anonymous])
        assert r.handled == [(GW, 5)]
        assert r.dead_letters == [bad, anonymous]
        rows = store.dead_letter_rows()
        assert [(x.letter.payload, x.letter.reason, x.letter.seq) for x in rows] == [
            (b"garbage", "bad_json", None), (b"\xff\xfe not json", "schema", 5)]
        assert rows[0].id > rows[1].id
        assert store.batch_outcomes(GW) == {5: "dead_letter"}
        # The same bytes again are a redelivery; other bytes for seq 5 are kept as well.
        again = store.write([], [bad])
        assert (again.duplicate_batches, again.dead_letters, again.handled) == (1, [], [(GW, 5)])
        other = letter(5, b"other bytes")
        assert store.write([], [other]).dead_letters == [other]
        assert len(store.dead_letter_rows()) == 3
        # A valid batch for a seq that was dead-lettered is not stored over it.
        late = store.write([batch(5, ("tn-aq-01", "pm25", 0, 1.0))], [])
        assert [d.reason for d in late.dead_letters] == ["conflict"]
        assert values(store) == []

    def test_empty_write_does_nothing(self, store: Any) -> None:
        r = store.write([], [])
        assert (r.stored_batches, r.stored_readings, r.duplicate_batches, r.handled) == (0, 0, 0, [])

    def test_watermarks_are_persisted_and_never_move_back(self, store: Any) -> None:
        assert store.watermarks() == {}
        store.save_watermarks({GW: 10, "tn-gw-02": 3})
        store.save_watermarks({GW: 7})
        store.write([batch(11, ("tn-aq-01", "pm25", 0, 1.0))], [], watermarks={GW: 11, "tn-gw-02": 2})
        assert store.watermarks() == {GW: 11, "tn-gw-02": 3}

    def test_declared_drops_count_as_handled_and_as_lost(self, store: Any) -> None:
        store.write([batch(1, ("tn-aq-01", "pm25", 0, 1.0)), batch(4, ("tn-aq-01", "pm25", 60, 1.0)),
                     batch(9, ("tn-aq-01", "pm25", 120, 1.0))], [letter(5)])
        assert store.handled_seqs(GW, 0, 100) == [1, 4, 5, 9]
        store.record_dropped(GW, 3, T0)
        store.record_dropped(GW, 3, T0)  # repeated status messages
        assert store.handled_seqs(GW, 0, 100) == [1, 2, 3, 4, 5, 9]
        assert store.handled_seqs(GW, 3, 2) == [4, 5]
        assert store.handled_seqs("tn-gw-02", 0, 10) == []
        gaps = [(g.first_seq, g.last_seq, g.missing, g.lost) for g in store.seq_gaps(GW)]
        assert gaps == [(2, 3, 2, 2), (6, 8, 3, 0)]
        (c,) = store.completeness()
        assert (c.gateway, c.expected, c.stored, c.dead_lettered, c.lost, c.pending) == (GW, 9, 3, 1, 2, 3)
        assert c.completeness_pct == pytest.approx(33.33)

    def test_drops_past_the_last_seq_show_as_a_trailing_gap(self, store: Any) -> None:
        store.write([batch(1, ("tn-aq-01", "pm25", 0, 1.0))], [])
        store.record_dropped(GW, 4, T0)
        assert [(g.first_seq, g.last_seq, g.lost) for g in store.seq_gaps()] == [(2, 4, 3)]
        (c,) = store.completeness()
        assert (c.expected, c.stored, c.lost, c.pending) == (4, 1, 3, 0)

    def test_rollups_average_valid_readings_per_minute_and_hour(self, store: Any) -> None:
        readings = [(0, 10.0, "good"), (20, 20.0, "suspect"), (30, 500.0, "bad"), (40, 90.0, "calibrating"),
                    (50, 80.0, "maintenance"), (65, 40.0, "good")]
        store.write([batch(1, *[("tn-aq-01", "pm25", t, v, q) for t, v, q in readings])], [])
        refresh(store)
        m = store.query_rollup("1m", "tn-aq-01", "pm25", LONG_AGO, LATER)
        assert [(x.bucket, x.site, x.avg, x.min, x.max, x.count) for x in m] == [
            (T0, SITE, 15.0, 10.0, 20.0, 2), (at(60), SITE, 40.0, 40.0, 40.0, 1)]
        (h,) = store.query_rollup("1h", "tn-aq-01", "pm25", LONG_AGO, LATER)
        assert (h.bucket, h.avg, h.min, h.max, h.count) == (T0, pytest.approx(70 / 3), 10.0, 40.0, 3)

    def test_late_readings_update_their_old_buckets(self, store: Any) -> None:
        store.write([batch(1, ("tn-aq-01", "pm25", 3600, 10.0))], [])
        refresh(store)
        # A gateway back after an hour offline delivers older readings under later seqs.
        store.write([batch(2, ("tn-aq-01", "pm25", 3605, 30.0), ("tn-aq-01", "pm25", 5, 7.0))], [])
        refresh(store)
        m = store.query_rollup("1m", "tn-aq-01", "pm25", LONG_AGO, LATER)
        assert [(x.bucket, x.avg, x.count) for x in m] == [(T0, 7.0, 1), (at(3600), 20.0, 2)]
        h = store.query_rollup("1h", "tn-aq-01", "pm25", LONG_AGO, LATER)
        assert [(x.bucket, x.avg, x.count) for x in h] == [(T0, 7.0, 1), (at(3600), 20.0, 2)]

    def test_rollups_of_a_conflicting_batch_are_not_touched(self, store: Any) -> None:
        store.write([batch(1, ("tn-aq-01", "pm25", 0, 10.0))], [])
        store.write([batch(2, ("tn-aq-01", "pm25", 0, 99.0), ("tn-aq-01", "pm25", 10, 99.0))], [])
        refresh(store)
        (m,) = store.query_rollup("1m", "tn-aq-01", "pm25", LONG_AGO, LATER)
        assert (m.avg, m.count) == (10.0, 1)

    def test_retention_removes_only_what_is_older_than_configured(self, store: Any) -> None:
        old = T0 - timedelta(days=10)
        store.write([batch(1, ("tn-aq-01", "pm25", -10 * 86400, 1.0), ("tn-aq-01", "pm25", 0, 2.0))],
                    [DeadLetter(old, TOPIC, "bad_json", "old", b"x"), letter(None, b"new")])
        kept_forever = apply_retention(store, RetentionPolicy(), T0)
        assert kept_forever.readings_rows + kept_forever.readings_chunks == 0
        result = apply_retention(store, RetentionPolicy(readings_days=5, dead_letters_days=5), T0)
        assert result.readings_rows + result.readings_chunks >= 1
        assert result.dead_letters_rows == 1
        assert values(store) == [(T0, 2.0, "good")]
        assert [d.letter.payload for d in store.dead_letter_rows()] == [b"new"]

    def test_mirror_reads_each_stored_reading_once_in_whole_batches(self, store: Any) -> None:
        assert store.read_since(store.mirror_checkpoint("influx"), 10).rows == []
        store.write([batch(1, ("tn-aq-01", "pm25", 0, 1.0), ("tn-aq-01", "pm10", 0, 2.0)),
                     batch(2, ("tn-aq-01", "pm25", 60, 3.0), ("tn-aq-01", "pm10", 60, 4.0))], [letter(3)])
        store.write([batch(4, ("tn-aq-01", "pm25", 0, 9.0)),  # a conflict: not stored, not mirrored
                     batch(5, ("tn-aq-01", "pm25", 60, 3.0), ("tn-aq-01", "pm25", 120, 5.0))], [])
        seen: list[tuple[datetime, str, float]] = []
        checkpoint = store.mirror_checkpoint("influx")
        for _ in range(10):
            page = store.read_since(checkpoint, 3)
            assert len(page.rows) <= 4  # whole batches (or transactions), about the limit
            seen.extend((r.time, r.metric, r.value) for r in page.rows)
            if page.checkpoint == checkpoint:
                break
            checkpoint = page.checkpoint
            store.save_mirror_checkpoint("influx", checkpoint)
        assert sorted(seen) == [(T0, "pm10", 2.0), (T0, "pm25", 1.0), (at(60), "pm10", 4.0),
                                (at(60), "pm25", 3.0), (at(120), "pm25", 5.0)]
        assert {r.site for r in store.read_since(0, 100).rows} == {SITE}
        assert store.mirror_checkpoint("influx") == checkpoint
        assert store.mirror_checkpoint("other") == 0

    def test_senml_readings_reach_rollups_and_mirror_but_not_completeness(self, store: Any) -> None:
        store.write([batch(1, ("tn-aq-01", "pm25", 0, 10.0))], [])
        refresh(store)
        assert mirrored(store) == [(T0, "pm25", 10.0)]
        pack = senml(("tn-aq-01", "pm25", 20, 20.0), ("tn-aq-01", "pm25", 65, 40.0))
        r = store.write([pack], [])
        assert (r.stored_batches, r.stored_readings, r.handled) == (1, 2, [])
        assert store.write([pack], []).stored_readings == 0  # a redelivery: nothing new
        clash = store.write([senml(("tn-aq-01", "pm25", 20, 99.0), ("tn-aq-01", "pm25", 50, 99.0))], [])
        assert [(d.reason, d.seq) for d in clash.dead_letters] == [("conflict", None)]
        # Several unsequenced batches in one call, between sequenced ones.
        store.write([batch(2, ("tn-aq-01", "pm25", 30, 30.0)), senml(("tn-aq-01", "pm25", 40, 60.0)),
                     senml(("tn-aq-01", "pm10", 40, 5.0)), batch(3, ("tn-aq-01", "pm10", 50, 7.0))], [])
        refresh(store)
        m = store.query_rollup("1m", "tn-aq-01", "pm25", LONG_AGO, LATER)
        assert [(x.bucket, x.avg, x.min, x.max, x.count) for x in m] == [
            (T0, 30.0, 10.0, 60.0, 4), (at(60), 40.0, 40.0, 40.0, 1)]
        (h,) = store.query_rollup("1h", "tn-aq-01", "pm25", LONG_AGO, LATER)
        assert (h.avg, h.count) == (32.0, 5)
        (h10,) = store.query_rollup("1h", "tn-aq-01", "pm10", LONG_AGO, LATER)
        assert (h10.avg, h10.count) == (6.0, 2)
        assert mirrored(store) == [(at(20), "pm25", 20.0), (at(30), "pm25", 30.0), (at(40), "pm10", 5.0),
                                   (at(40), "pm25", 60.0), (at(50), "pm10", 7.0), (at(65), "pm25", 40.0)]
        assert len(mirrored(store, "replay")) == 7  # every stored reading, once
        # No seq: nothing in seq gaps, completeness, outcomes or the handled seqs.
        assert store.batch_outcomes(GW) == {1: "stored", 2: "stored", 3: "stored"}
        assert store.handled_seqs(GW, 0, 10) == [1, 2, 3] and store.seq_gaps() == []
        (c,) = store.completeness()
        assert (c.expected, c.stored, c.dead_lettered, c.lost, c.pending) == (3, 3, 0, 0, 0)
        refresh(store)
        assert store.query_rollup("1m", "tn-aq-01", "pm25", LONG_AGO, LATER)[0].count == 4

    def test_migrate_again_is_a_no_op(self, store: Any) -> None:
        store.write([batch(1, ("tn-aq-01", "pm25", 0, 1.0))], [])
        store.migrate()
        store.migrate()
        assert len(values(store)) == 1
        assert store.write([batch(1, ("tn-aq-01", "pm25", 0, 1.0))], []).duplicate_batches == 1

    def test_ping_answers(self, store: Any) -> None:
        assert store.ping() is True


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    s: MemoryStore | SqliteStore = (MemoryStore() if request.param == "memory"
                                    else SqliteStore(tmp_path / "s.db"))
    s.migrate()
    yield s
    s.close()


class TestStoreContract(StoreContract):
    pass
