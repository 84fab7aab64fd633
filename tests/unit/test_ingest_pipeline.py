"""classify(): every input becomes a ValidBatch or a DeadLetter with the right reason (B1, B3, S1)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract import topics
from contract.errors import DEAD_LETTER_REASONS
from contract.registry import Registry, load_registry
from ingest.pipeline import TimeWindow, classify
from ingest.ports import DeadLetter, ValidBatch

REG = load_registry()
SITE, GW = next((s.id, g.id) for s, g in REG.iter_gateways() if g.sensors)
SENSOR = REG.sensors_of(GW)[0]
OTHER_SITE, OTHER_GW = next((s.id, g.id) for s, g in REG.iter_gateways() if s.id != SITE and g.sensors)
NOW = datetime(2026, 11, 28, 5, 0, tzinfo=UTC)
WINDOW = TimeWindow(past=timedelta(days=30), future=timedelta(minutes=5))
TOPIC = topics.telemetry(SITE, GW)


def batch(**over: Any) -> dict[str, Any]:
    b: dict[str, Any] = {
        "v": 1,
        "gateway": GW,
        "seq": 7,
        "sent_at": "2026-11-28T05:00:00Z",
        "readings": [
            {"sensor": SENSOR.id, "metric": m, "ts": "2026-11-28T04:59:58Z", "value": 41.5}
            for m in SENSOR.metrics
        ],
    }
    b.update(over)
    return b


def one_reading(**reading: Any) -> dict[str, Any]:
    """``batch()`` with one reading of SENSOR's first metric, its fields changed by `reading`."""
    first = {"sensor": SENSOR.id, "metric": SENSOR.metrics[0], "ts": "2026-11-28T04:59:58Z", "value": 1}
    return batch(readings=[first | reading])


def raw(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def run(payload: bytes, topic: str = TOPIC, registry: Registry = REG) -> ValidBatch | DeadLetter:
    return classify(topic, payload, NOW, registry, WINDOW)


def reason(payload: bytes, topic: str = TOPIC) -> str:
    out = run(payload, topic)
    assert isinstance(out, DeadLetter), out
    assert out.payload == payload and out.topic == topic and out.received_at == NOW
    return out.reason


def test_a_good_batch_is_valid_with_its_site() -> None:
    out = run(raw(batch()))
    assert isinstance(out, ValidBatch)
    assert out.site == SITE and out.batch.seq == 7 and out.raw == raw(batch())


@pytest.mark.parametrize(
    ("payload", "expected"),
    ids=lambda v: v[:40] if isinstance(v, bytes) else v,
    argvalues=[
        (b"", "bad_json"),
        (b"   ", "bad_json"),
        (b"{not json", "bad_json"),
        (b"\xff\xfe\x00garbage", "bad_json"),
        (raw(batch(seq="7")), "schema"),
        (raw(batch(seq=0)), "schema"),
        (raw(batch(seq=2**70)), "schema"),
        (raw(batch(readings=[])), "schema"),
        (raw({k: v for k, v in batch().items() if k != "sent_at"}), "schema"),
        (raw(batch(extra=1)), "schema"),
        (raw(batch(v=2)), "schema"),
        (
            raw(one_reading(ts="2026-11-28T04:59:58")),
            "schema",
        ),  # naive time
        (
            raw(one_reading(value="1")),
            "schema",
        ),
        (
            raw(one_reading(value=float("nan"))),
            "non_finite",
        ),
        (
            raw(one_reading(value=float("inf"))),
            "non_finite",
        ),
        (raw(batch()).replace(b"41.5", b"1e999"), "non_finite"),
        (b"{" + b" " * (256 * 1024) + b"}", "oversize"),
        (
            raw(one_reading(sensor="nope-01")),
            "unknown_sensor",
        ),
        (
            raw(one_reading(metric="rain_mm_h" if "rain_mm_h" not in SENSOR.metrics else "pm25")),
            "unknown_sensor",
        ),
        (raw(batch(gateway=OTHER_GW)), "topic_mismatch"),
    ],
)
def test_malformed_payloads_get_their_reason(payload: bytes, expected: str) -> None:
    assert reason(payload) == expected


@pytest.mark.parametrize(
    "payload",
    [b"[" * 10_000 + b"]" * 10_000, b"[" * 10_000, b'{"a":' * 5000],
    ids=["deep-closed", "deep-open", "deep-objects"],
)
def test_deep_nesting_is_a_dead_letter(payload: bytes) -> None:
    assert reason(payload) in {"bad_json", "schema"}


def test_topics_that_are_not_telemetry_are_dead_letters() -> None:
    assert reason(raw(batch()), "some/other/topic") == "schema"
    assert reason(raw(batch()), topics.status(SITE, GW)) == "topic_mismatch"


def test_a_gateway_publishing_under_another_site_is_refused_and_acks_nothing() -> None:
    out = run(raw(batch()), topics.telemetry(OTHER_SITE, GW))
    assert isinstance(out, DeadLetter) and out.reason == "topic_mismatch" and out.seq is None


def test_a_gateway_posing_as_another_acks_nothing() -> None:
    out = run(raw(batch(gateway=OTHER_GW)))
    assert isinstance(out, DeadLetter) and out.reason == "topic_mismatch" and out.seq is None


def test_unknown_gateway_is_unknown_sensor_without_seq() -> None:
    out = run(raw(batch(gateway="ghost-gw")), topics.telemetry(SITE, "ghost-gw"))
    assert isinstance(out, DeadLetter) and out.reason == "unknown_sensor" and out.seq is None


def test_dead_letters_of_the_real_gateway_keep_the_seq_so_the_watermark_passes_them() -> None:
    for payload in (
        raw(batch(readings=[])),
        raw(batch(readings=[{"sensor": "nope", "metric": "pm25", "ts": "2026-11-28T04:59:58Z", "value": 1}])),
        raw(one_reading(value=float("nan"))),
    ):
        out = run(payload)
        assert isinstance(out, DeadLetter) and out.seq == 7 and out.gateway == GW and out.site == SITE


def at(ts: datetime) -> bytes:
    return raw(
        batch(readings=[{"sensor": SENSOR.id, "metric": SENSOR.metrics[0], "ts": ts.isoformat(), "value": 1}])
    )


def test_time_window_future_1970_and_late_data() -> None:
    assert reason(at(NOW + timedelta(minutes=6))) == "time_window"
    assert reason(at(datetime(1970, 1, 1, tzinfo=UTC))) == "time_window"
    assert reason(at(NOW - timedelta(days=31))) == "time_window"
    assert isinstance(run(at(NOW + timedelta(minutes=4))), ValidBatch)
    assert isinstance(run(at(NOW - timedelta(days=29))), ValidBatch)  # late data keeps its own time
    tz7 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC).astimezone(
        __import__("zoneinfo").ZoneInfo("Asia/Ho_Chi_Minh")
    )
    assert isinstance(run(at(tz7 - timedelta(hours=7, seconds=1))), ValidBatch)


def test_out_of_order_readings_inside_the_window_are_valid() -> None:
    rs = [
        {
            "sensor": SENSOR.id,
            "metric": SENSOR.metrics[0],
            "ts": (NOW - timedelta(minutes=m)).isoformat(),
            "value": m,
        }
        for m in (3, 1, 2)
    ]
    assert isinstance(run(raw(batch(readings=rs))), ValidBatch)


def test_the_window_is_configurable() -> None:
    tight = TimeWindow(past=timedelta(minutes=1), future=timedelta(0))
    assert isinstance(classify(TOPIC, at(NOW - timedelta(minutes=2)), NOW, REG, tight), DeadLetter)


# --- fuzz (B1): never an exception, always a known reason ------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def _check(out: ValidBatch | DeadLetter) -> None:
    if isinstance(out, DeadLetter):
        assert out.reason in DEAD_LETTER_REASONS
        assert isinstance(out.detail, str) and len(out.detail) <= 500


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_fuzz_random_bytes_never_raise(payload: bytes) -> None:
    out = run(payload)
    assert isinstance(out, DeadLetter)
    _check(out)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_fuzz_random_json_never_raises(value: Any) -> None:
    _check(run(json.dumps(value).encode()))


reading_st = st.fixed_dictionaries(
    {
        "sensor": st.sampled_from([SENSOR.id, "ghost", "", "x" * 100]),
        "metric": st.sampled_from([*SENSOR.metrics, "pm25", "nope", 3]),
        "ts": st.sampled_from(
            [
                "2026-11-28T04:59:58Z",
                "1970-01-01T00:00:00Z",
                "2099-01-01T00:00:00Z",
                "not a time",
                "2026-11-28T04:59:58",
            ]
        ),
        "value": st.one_of(
            st.floats(allow_nan=True, allow_infinity=True),
            st.integers(min_value=-(2**80), max_value=2**80),
            st.booleans(),
            st.text(max_size=3),
            st.none(),
        ),
    },
    optional={"quality": st.sampled_from(["good", "bad", "weird", 1])},
)


@settings(max_examples=500, deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "v": st.sampled_from([1, 1, 1, 2, "1"]),
            "gateway": st.sampled_from([GW, GW, OTHER_GW, "GHOST", ""]),
            "seq": st.one_of(st.integers(min_value=-5, max_value=2**64), st.text(max_size=3)),
            "sent_at": st.sampled_from(["2026-11-28T05:00:00Z", "yesterday"]),
            "readings": st.lists(reading_st, max_size=6),
        }
    ),
    st.sampled_from([TOPIC, topics.telemetry(OTHER_SITE, GW), topics.status(SITE, GW), "x/y"]),
)
def test_fuzz_structured_batches_get_a_consistent_answer(obj: dict[str, Any], topic: str) -> None:
    payload = json.dumps(obj).encode()
    out = run(payload, topic)
    _check(out)
    if isinstance(out, ValidBatch):
        assert topic == TOPIC and obj["gateway"] == GW
        assert all(REG.allows(GW, r.sensor, r.metric) for r in out.batch.readings)
    elif out.seq is not None:
        # only the topic's own, registered gateway may advance its watermark with a dead letter
        assert topic == TOPIC and out.gateway == GW


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=200))
def test_fuzz_deep_nesting_never_raises(depth: int) -> None:
    payload = (
        b'{"v":1,"gateway":"' + GW.encode() + b'","seq":1,"x":' + b"[" * depth * 50 + b"]" * depth * 50 + b"}"
    )
    _check(run(payload))
