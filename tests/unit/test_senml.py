"""SenML (RFC 8428) decoding and classification: resolution, naming, units, times; any input
bytes give records or a dead letter, never an exception."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from contract import senml, topics
from contract.errors import DecodeError
from contract.registry import load_registry
from ingest.pipeline import TimeWindow
from ingest.ports import DeadLetter, ValidBatch
from ingest.senml import classify_senml

REG = load_registry()
NOW = datetime(2026, 11, 28, 5, 0, tzinfo=UTC)
TOPIC = topics.senml("thong-nhat", "tn-gw-01")


def test_base_fields_resolve_per_rfc_8428_section_4_6() -> None:
    t0 = NOW.timestamp() - 60
    raw = json.dumps([
        {"bn": "urn:dev:sw:tn-aq-01:", "bt": t0, "bu": "ug/m3", "bv": 1, "n": "pm25", "v": 40.5},
        {"n": "pm10", "v": 69, "t": 10},
        {"bn": "urn:dev:sw:tn-aq-01:", "bv": 0, "n": "humidity_pct", "u": "%RH", "v": 70},
        {"bn": "urn:dev:sw:tn-noise-01:", "bt": -5, "n": "noise_laeq", "u": "dBA", "v": 55},
        {"bn": "urn:dev:sw:tn-lamp-01:", "bu": "0/1", "n": "cabinet_door_open", "vb": True},
    ]).encode()
    recs = senml.decode(raw, NOW)
    t = datetime.fromtimestamp(t0, UTC)
    assert [(r.sensor, r.metric, r.time, r.value, r.unit) for r in recs] == [
        ("tn-aq-01", "pm25", t, 41.5, "ug/m3"),
        ("tn-aq-01", "pm10", t + timedelta(seconds=10), 70.0, "ug/m3"),
        ("tn-aq-01", "humidity_pct", t, 70.0, "%RH"),
        ("tn-noise-01", "noise_laeq", NOW - timedelta(seconds=5), 55.0, "dBA"),  # relative: bt < 2**28
        ("tn-lamp-01", "cabinet_door_open", NOW - timedelta(seconds=5), 1.0, "0/1"),
    ]
    assert all(senml.unit_ok(r.metric, r.unit) for r in recs)
    assert senml.parse_name(senml.name_of("tn-aq-01", "pm25")) == ("tn-aq-01", "pm25")


def test_a_message_without_time_is_stamped_at_receipt() -> None:
    [rec] = senml.decode(b'[{"n": "urn:dev:sw:tn-aq-01:pm25", "v": 3}]', NOW)
    assert rec.time == NOW and rec.unit is None


def test_classified_senml_is_an_unsequenced_batch() -> None:
    raw = json.dumps([{"bn": "urn:dev:sw:tn-aq-01:", "n": "pm25", "u": "µg/m³", "v": 2000}]).encode()
    vb = classify_senml(TOPIC, raw, NOW, REG, TimeWindow())
    assert isinstance(vb, ValidBatch) and not vb.sequenced
    assert [(r.sensor, r.metric, r.value, r.quality) for r in vb.batch.readings] == [
        ("tn-aq-01", "pm25", 2000.0, "bad")]  # outside the catalog's physical bounds


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
        st.sampled_from(["bn", "bt", "bu", "bv", "bver", "n", "u", "v", "vb", "vs", "t", "s", "x_"]),
        kids, max_size=6),
    max_leaves=20).map(lambda x: json.dumps(x).encode()))
def test_any_bytes_become_records_or_a_dead_letter(raw: bytes) -> None:
    with contextlib.suppress(DecodeError):  # anything else fails the test
        senml.decode(raw, NOW)
    out = classify_senml(TOPIC, raw, NOW, REG, TimeWindow())
    assert isinstance(out, ValidBatch | DeadLetter)
    if isinstance(out, DeadLetter):
        assert out.seq is None and "unexpected error" not in out.detail


def test_stores_keep_an_unsequenced_batch_once_and_claim_nothing(tmp_path: Path) -> None:
    from ingest.stores.memory import MemoryStore
    from ingest.stores.sqlite import SqliteStore

    t0 = NOW.timestamp() - 60
    raw = json.dumps([{"bn": "urn:dev:sw:tn-aq-01:", "bt": t0, "n": "pm25", "v": 7}]).encode()
    other = raw.replace(b'"v": 7', b'"v": 8')
    first, again, clash = (classify_senml(TOPIC, r, NOW, REG, TimeWindow()) for r in (raw, raw, other))
    assert isinstance(first, ValidBatch) and isinstance(again, ValidBatch) and isinstance(clash, ValidBatch)
    sqlite = SqliteStore(tmp_path / "s.db")
    sqlite.migrate()
    for store in (MemoryStore(), sqlite):
        r1 = store.write([first], [])
        r2 = store.write([again, clash], [])
        assert (r1.stored_readings, r2.stored_readings, r1.handled, r2.handled) == (1, 0, [], [])
        [letter] = r2.dead_letters
        assert (letter.reason, letter.seq, letter.payload) == ("conflict", None, other)
        rows = store.query_readings("tn-aq-01", "pm25", NOW - timedelta(hours=1), NOW)
        assert [(r.value, r.quality) for r in rows] == [(7.0, "good")]
        assert store.batch_outcomes("tn-gw-01") == {} and store.watermarks() == {}
    sqlite.close()
