"""Contract v1: topics, codec and registry behave as docs/contract.md says."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract import codec, topics
from contract.catalog import METRICS, SENSOR_KINDS
from contract.errors import DEAD_LETTER_REASONS, DecodeError, RegistryError, TopicError
from contract.models import MAX_PAYLOAD_BYTES, Ack, Reading, Status, TelemetryBatch
from contract.registry import load_registry, parse_registry
from tests.support.registry import refusal, ward_registry_yaml

slugs = st.from_regex(r"\A[a-z0-9][a-z0-9-]{0,62}\Z")


@given(site=slugs, gateway=slugs, kind=st.sampled_from(topics.KINDS))
def test_topic_build_and_parse_are_inverses(site: str, gateway: str, kind: topics.TopicKind) -> None:
    parsed = topics.parse(topics.build(site, gateway, kind))
    assert (parsed.site, parsed.gateway, parsed.kind) == (site, gateway, kind)
    assert str(parsed) == topics.build(site, gateway, kind)


@pytest.mark.parametrize(
    "bad",
    ["smartward/v2/a/b/telemetry", "smartward/v1/A/b/telemetry", "smartward/v1/a/b/c/telemetry",
     "smartward/v1/a/b/other", "smartward/v1/a/+/telemetry", ""],
)
def test_topic_parse_refuses_foreign_topics(bad: str) -> None:
    with pytest.raises(TopicError):
        topics.parse(bad)


def test_shared_subscription_filter() -> None:
    assert topics.subscription("telemetry") == "smartward/v1/+/+/telemetry"
    shared = topics.subscription("telemetry", share_group="ingest")
    assert shared == "$share/ingest/smartward/v1/+/+/telemetry"


def _batch_dict(**over: object) -> dict[str, object]:
    d: dict[str, object] = {
        "v": 1, "gateway": "tn-gw-01", "seq": 1842, "sent_at": "2026-11-28T05:00:00.123Z",
        "readings": [
            {"sensor": "tn-aq-01", "metric": "pm25", "ts": "2026-11-28T04:59:58Z", "value": 41.5},
            {"sensor": "tn-aq-01", "metric": "pm10", "ts": "2026-11-28T04:59:58Z", "value": 70.2,
             "quality": "suspect"},
        ],
    }
    d.update(over)
    return d


def test_contract_example_batch_round_trips() -> None:
    batch = codec.decode_telemetry(json.dumps(_batch_dict()).encode())
    assert batch.seq == 1842
    assert batch.readings[0].quality == "good"
    assert batch.readings[1].quality == "suspect"
    assert batch.sent_at.utcoffset() is not None
    assert codec.decode_telemetry(codec.encode(batch)) == batch


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "bad_json"),
        (b"{", "bad_json"),
        (b"\xff\xfe\x00", "bad_json"),
        (json.dumps(_batch_dict()).replace("tn-aq-01", "tn-aq-\udcc3(", 1).encode("utf-8", "surrogateescape"),
         "bad_json"),
        (json.dumps(_batch_dict()).replace("41.5", "NaN").encode(), "non_finite"),
        (json.dumps(_batch_dict()).replace("41.5", "Infinity").encode(), "non_finite"),
        (json.dumps(_batch_dict()).replace("41.5", "1e999").encode(), "non_finite"),
        (json.dumps(_batch_dict(v=2)).encode(), "schema"),
        (json.dumps(_batch_dict(seq=0)).encode(), "schema"),
        (json.dumps(_batch_dict(readings=[])).encode(), "schema"),
        (json.dumps(_batch_dict(sent_at="2026-11-28T05:00:00")).encode(), "schema"),
        (json.dumps(_batch_dict(extra=1)).encode(), "schema"),
        (json.dumps(_batch_dict()).replace("41.5", "true").encode(), "schema"),
        (json.dumps(_batch_dict()).replace("41.5", '"41.5"').encode(), "schema"),
        (b"[" * 5000 + b"]" * 5000, "schema"),
        (b" " * (MAX_PAYLOAD_BYTES + 1), "oversize"),
    ],
)
def test_decode_classifies_every_failure_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        codec.decode_telemetry(raw)
    assert info.value.reason == reason
    assert info.value.reason in DEAD_LETTER_REASONS


@given(st.binary(max_size=512))
def test_decode_never_raises_anything_but_decode_error(raw: bytes) -> None:
    try:
        codec.decode_telemetry(raw)
    except DecodeError as exc:
        assert exc.reason in DEAD_LETTER_REASONS


def test_status_and_ack_round_trip() -> None:
    now = datetime(2026, 11, 28, 5, tzinfo=UTC)
    st_msg = Status(v=1, gateway="tn-gw-01", state="offline", ts=now, last_seq=7)
    assert codec.decode_status(codec.encode(st_msg)) == st_msg
    assert codec.decode_ack(b'{"v":1,"seq":1842}') == Ack(v=1, seq=1842)
    batch = TelemetryBatch(v=1, gateway="g", seq=1, sent_at=now,
                           readings=[Reading(sensor="s", metric="pm25", ts=now, value=1.0)])
    assert b'"quality":"good"' in codec.encode(batch)


def test_bundled_registry_has_the_three_sites_and_enough_devices() -> None:
    reg = load_registry()
    assert set(reg.sites) == {"thong-nhat", "quang-trung", "an-xa"}
    assert len(reg.gateways) >= 7
    assert len(reg.sensors) >= 60
    assert reg.sites["an-xa"].location.placeholder
    for ref in reg.sensors.values():
        assert ref.spec.kind in SENSOR_KINDS
        assert all(m in METRICS for m in ref.spec.metrics)
    assert reg.allows("tn-gw-01", "tn-aq-01", "pm25")
    assert not reg.allows("tn-gw-02", "tn-aq-01", "pm25")
    assert not reg.allows("tn-gw-01", "tn-aq-01", "water_level_cm")


_GOOD = ward_registry_yaml("tn-gw-01", """          - id: tn-aq-01
            kind: air_quality
            metrics: [pm25, pm10]
            interval_s: 60
""")


def test_small_registry_parses_with_defaults() -> None:
    reg = parse_registry(_GOOD)
    assert reg.sensors["tn-aq-01"].spec.metrics == ("pm25", "pm10")
    assert reg.site_of("tn-gw-01") == "thong-nhat"


@pytest.mark.parametrize(
    ("edit", "line", "words"),
    [
        (("kind: air_quality", "kind: air_qualty"), 11, "unknown sensor kind"),
        (("metrics: [pm25, pm10]", "metrics: [pm25, pm99]"), 12, "unknown metric"),
        (("interval_s: 60", "interval_s: 60\n            colour: red"), 14, "Extra inputs"),
        (("lat: 20.440", "lat: 120.440"), 6, "less than or equal"),
        (("      - id: tn-gw-01", "      - id: tn-gw-01\n        id: x"), 9, "duplicate key"),
        (("kind: ward", "kind: town"), 5, "kind"),
        (("id: tn-aq-01", "id: TN_AQ"), 10, "pattern"),
    ],
)
def test_malformed_registry_is_refused_with_its_line(edit: tuple[str, str], line: int, words: str) -> None:
    error = refusal(_GOOD.replace(*edit))
    assert error.line == line, str(error)
    assert words in str(error)
    assert str(error).startswith(f"r.yaml:{line}:")


def test_duplicate_sensor_ids_are_refused_with_both_lines() -> None:
    text = _GOOD + "          - id: tn-aq-01\n            kind: noise\n"
    with pytest.raises(RegistryError) as info:
        parse_registry(text)
    assert info.value.line == 14
    assert "first on line 10" in str(info.value)
