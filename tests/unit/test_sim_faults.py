"""Fault injection: data faults, clock skew, link outages, labelled malformed payloads."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from contract import topics
from contract.catalog import METRICS
from contract.codec import decode_telemetry
from contract.errors import DEAD_LETTER_REASONS, DecodeError
from contract.models import Reading
from contract.registry import Registry, load_registry
from simulators.events import Event
from simulators.faults import (
    ClockSkew,
    Drift,
    Dropout,
    LinkOutage,
    MalformedPayload,
    QualityFlag,
    Spike,
    StuckValue,
    malformed_payloads,
)
from simulators.fleet import GatewaySimulator
from simulators.scenarios import Scenario

START = datetime(2026, 11, 28, 0, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 28, 5, 0, tzinfo=UTC)
CODEC_REASONS = {"bad_json", "schema", "non_finite", "oversize"}


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_registry()


def with_events(*events: Event) -> Scenario:
    return Scenario("faults", START, 6 * 3600.0, "Thử lỗi", "Fault test", events=tuple(events))


def run(registry: Registry, gateway: str, *events: Event, hours: float = 3) -> list[Reading]:
    sim = GatewaySimulator(registry, gateway, seed=4, scenario=with_events(*events), start=START)
    return sim.advance(START + timedelta(hours=hours))


def series(readings: list[Reading], sensor: str, metric: str) -> list[Reading]:
    return [r for r in readings if r.sensor == sensor and r.metric == metric]


def at(minutes: int) -> datetime:
    return START + timedelta(minutes=minutes)


def test_a_stuck_sensor_repeats_one_value_and_only_inside_its_window(registry: Registry) -> None:
    rs = run(registry, "tn-gw-01", StuckValue("tn-aq-01", at(60), at(120), frozenset({"pm25"})))
    inside = {r.value for r in series(rs, "tn-aq-01", "pm25") if at(60) <= r.ts < at(120)}
    assert len(inside) == 1
    outside = {r.value for r in series(rs, "tn-aq-01", "pm25") if r.ts >= at(120)}
    assert len(outside) > 30
    assert len({r.value for r in series(rs, "tn-aq-01", "pm10") if at(60) <= r.ts < at(120)}) > 30
    assert all(r.quality == "good" for r in rs)  # the device does not know


def test_a_stuck_sensor_holds_its_last_reading_so_the_first_wrong_one_is_at_start(registry: Registry) -> None:
    """The instrument hangs between two readings: the reading at ``start`` already repeats the
    one before it, and that is the fault's ground-truth onset (the first wrong reading)."""
    clean = series(run(registry, "tn-gw-01"), "tn-aq-01", "pm25")
    pm = series(run(registry, "tn-gw-01", StuckValue("tn-aq-01", at(60), at(120), frozenset({"pm25"}))),
                "tn-aq-01", "pm25")
    before = next(r for r in pm if r.ts == at(59))
    first = next(r for r in pm if r.ts == at(60))
    assert before.value == next(r for r in clean if r.ts == at(59)).value
    assert first.value == before.value
    assert first.value != next(r for r in clean if r.ts == at(60)).value  # the true value moved on


def test_stuck_faults_do_not_change_other_sensors(registry: Registry) -> None:
    clean = run(registry, "tn-gw-01")
    faulty = run(registry, "tn-gw-01", StuckValue("tn-aq-01", at(60)))
    assert [r for r in clean if r.sensor != "tn-aq-01"] == [r for r in faulty if r.sensor != "tn-aq-01"]


def test_a_spike_replaces_one_reading_with_an_out_of_bounds_value(registry: Registry) -> None:
    rs = run(registry, "tn-gw-01", Spike("tn-aq-01", "pm25", at(30) + timedelta(seconds=20)))
    pm = series(rs, "tn-aq-01", "pm25")
    spikes = [r for r in pm if not METRICS["pm25"].in_bounds(r.value)]
    assert len(spikes) == 1
    assert spikes[0].ts == at(31)
    assert spikes[0].value == 2 * METRICS["pm25"].max


def test_drift_grows_with_time(registry: Registry) -> None:
    clean = series(run(registry, "tn-gw-01"), "tn-noise-02", "noise_laeq")
    drift = series(run(registry, "tn-gw-01", Drift("tn-noise-02", "noise_laeq", at(60), per_hour=6.0)),
                   "tn-noise-02", "noise_laeq")
    diffs = {d.ts: d.value - c.value for c, d in zip(clean, drift, strict=True)}
    assert diffs[at(30)] == pytest.approx(0.0)
    assert diffs[at(90)] == pytest.approx(3.0, abs=0.02)
    assert diffs[at(180)] == pytest.approx(12.0, abs=0.02)


def test_dropout_silences_the_sensor_and_quality_flags_mark_it(registry: Registry) -> None:
    rs = run(registry, "tn-gw-01",
             Dropout("tn-noise-01", at(30), at(90)),
             QualityFlag("tn-aq-02", at(100), at(110), "calibrating"))
    noise = series(rs, "tn-noise-01", "noise_laeq")
    assert not [r for r in noise if at(30) <= r.ts < at(90)]
    assert len(noise) == 180 - 60
    flagged = {r.ts for r in rs if r.sensor == "tn-aq-02" and r.quality == "calibrating"}
    assert flagged == {at(m) for m in range(100, 110)}


def test_clock_skew_shifts_the_timestamps_of_one_gateway(registry: Registry) -> None:
    clean = run(registry, "tn-gw-01")
    skewed = run(registry, "tn-gw-01", ClockSkew("tn-gw-01", at(60), -3600.0, at(120)))
    assert len(clean) == len(skewed)
    moved = [r for r in skewed if r.ts < at(60) and r.sensor == "tn-aq-01" and r.metric == "pm25"]
    assert len(moved) == 59 + 60  # its own first hour (01..59) plus the skewed hour, stamped 1 h early
    assert [r.ts for r in skewed] == sorted(r.ts for r in skewed)
    assert run(registry, "tn-gw-02", ClockSkew("tn-gw-01", at(60), -3600.0)) == run(registry, "tn-gw-02")


def test_link_outage_drops_the_link_but_not_the_readings(registry: Registry) -> None:
    outage = LinkOutage(frozenset({"qt-gw-02"}), at(60), at(120))
    sim = GatewaySimulator(registry, "qt-gw-02", scenario=with_events(outage), start=START)
    assert sim.link_up(at(59))
    assert not sim.link_up(at(60))
    assert not sim.link_up(at(119))
    assert sim.link_up(at(120))
    rs = sim.advance(at(180))
    assert len([r for r in rs if at(60) <= r.ts < at(120) and r.sensor == "qt-rain-01"]) == 60
    other = GatewaySimulator(registry, "qt-gw-01", scenario=with_events(outage), start=START)
    assert other.link_up(at(90))


def test_fault_windows_must_be_aware_and_ordered() -> None:
    with pytest.raises(ValueError):
        Dropout("tn-aq-01", datetime(2026, 1, 1))
    with pytest.raises(ValueError):
        LinkOutage(frozenset({"x"}), at(60), at(30))


@pytest.fixture(scope="module")
def payloads(registry: Registry) -> list[MalformedPayload]:
    return malformed_payloads(registry, "tn-gw-01", now=NOW)


def test_every_malformed_payload_is_labelled_with_a_contract_reason_code(
    payloads: list[MalformedPayload],
) -> None:
    assert len({p.name for p in payloads}) == len(payloads)
    assert {p.reason for p in payloads} == set(DEAD_LETTER_REASONS)
    for p in payloads:
        assert p.reason in DEAD_LETTER_REASONS
        assert p.description_vi and p.description_en
        assert topics.parse(p.topic).gateway == "tn-gw-01"
    names = {p.name for p in payloads}
    # docs/reliability.md B1–B3.
    assert {"empty", "not_json", "invalid_utf8_prefix", "value_is_string", "missing_seq", "nan",
            "huge_float", "deep_nesting", "unknown_sensor", "topic_mismatch", "oversize",
            "ts_1970", "ts_far_future", "conflict"} <= names


def _codec_cases() -> list[object]:
    return [
        pytest.param(p, id=p.name)
        for p in malformed_payloads(load_registry(), "tn-gw-01", now=NOW)
        if p.reason in CODEC_REASONS
    ]


@pytest.mark.parametrize("payload", _codec_cases())
def test_the_codec_files_byte_level_faults_under_their_label(payload: MalformedPayload) -> None:
    with pytest.raises(DecodeError) as info:
        decode_telemetry(payload.payload)
    assert info.value.reason == payload.reason


def test_registry_level_faults_decode_but_break_the_registry_or_the_topic(
    registry: Registry, payloads: list[MalformedPayload]
) -> None:
    for p in payloads:
        if p.reason in CODEC_REASONS:
            continue
        batch = decode_telemetry(p.payload)  # well-formed: the ingest must look further
        topic = topics.parse(p.topic)
        if p.reason == "unknown_sensor":
            assert batch.gateway == topic.gateway
            assert not all(registry.allows(batch.gateway, r.sensor, r.metric) for r in batch.readings)
        elif p.reason == "topic_mismatch":
            assert batch.gateway != topic.gateway
        elif p.reason == "time_window":
            assert all(abs(r.ts - NOW) > timedelta(days=365) for r in batch.readings)
        elif p.reason == "conflict":
            assert p.preceded_by is not None
            first = decode_telemetry(p.preceded_by)
            assert (first.gateway, first.seq) == (batch.gateway, batch.seq)
            assert first.readings != batch.readings


def test_malformed_payloads_use_their_own_seq_range(payloads: list[MalformedPayload]) -> None:
    seqs = []
    for p in payloads:
        try:
            seqs.append(json.loads(p.payload)["seq"])
        except (ValueError, KeyError, TypeError, RecursionError):  # deep_nesting breaks json.loads
            continue
    valid = [s for s in seqs if isinstance(s, int) and s >= 1]
    assert len(valid) > 20
    assert all(s >= 900_000_000 for s in valid)  # never a seq a real batch needs
