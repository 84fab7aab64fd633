"""Batching and sealing: count and age cuts, contiguous seqs, the 256 KiB split."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from contract.codec import decode_telemetry
from contract.models import MAX_PAYLOAD_BYTES, Reading
from edge.batching import Batcher, ReadingTooLarge, seal

T0 = datetime(2026, 11, 28, 5, 0, tzinfo=UTC)


def readings(n: int, *, sensor: str = "tn-aq-01", start: datetime = T0) -> list[Reading]:
    return [Reading(sensor, "pm25", start + timedelta(seconds=i), float(i)) for i in range(n)]


def test_batcher_cuts_full_batches_at_max_readings() -> None:
    b = Batcher(max_readings=10, flush_interval=timedelta(seconds=5))
    b.add(readings(25), T0)
    assert b.due(T0)
    chunks = b.cut(T0)
    assert [len(c) for c in chunks] == [10, 10]
    assert len(b) == 5
    assert not b.due(T0 + timedelta(seconds=4))


def test_batcher_cuts_by_age_after_flush_interval() -> None:
    b = Batcher(max_readings=100, flush_interval=timedelta(seconds=5))
    assert b.deadline is None
    b.add(readings(3), T0)
    b.add(readings(2, start=T0 + timedelta(seconds=3)), T0 + timedelta(seconds=3))
    assert b.deadline == T0 + timedelta(seconds=5)
    assert b.cut(T0 + timedelta(seconds=4)) == []
    chunks = b.cut(T0 + timedelta(seconds=5))
    assert [len(c) for c in chunks] == [5]
    assert b.deadline is None


def test_batcher_forced_cut_takes_everything() -> None:
    b = Batcher(max_readings=100, flush_interval=timedelta(hours=1))
    b.add(readings(7), T0)
    assert [len(c) for c in b.cut(T0, force=True)] == [7]
    assert len(b) == 0


def test_batcher_ignores_empty_polls() -> None:
    b = Batcher(max_readings=100, flush_interval=timedelta(seconds=5))
    b.add([], T0)
    assert b.deadline is None
    assert b.cut(T0, force=True) == []


def test_seal_numbers_batches_from_first_seq_and_keeps_reading_times() -> None:
    chunks = [readings(3), readings(2, start=T0 - timedelta(hours=2))]
    sent_at = T0 + timedelta(minutes=1)
    batches = seal("tn-gw-01", 41, sent_at, chunks)
    assert [b.seq for b in batches] == [41, 42]
    decoded = [decode_telemetry(b.payload) for b in batches]
    assert [d.seq for d in decoded] == [41, 42]
    assert all(d.gateway == "tn-gw-01" and d.sent_at == sent_at for d in decoded)
    assert decoded[1].readings == chunks[1]  # own timestamps, not the send time
    assert [b.readings for b in batches] == [3, 2]


def test_seal_splits_a_batch_over_the_payload_limit() -> None:
    long_sensor = "s" * 63
    chunk = readings(1000, sensor=long_sensor)
    limit = 16 * 1024
    batches = seal("tn-gw-01", 1, T0, [chunk, readings(2)], max_payload_bytes=limit)
    assert len(batches) > 2
    assert all(len(b.payload) <= limit for b in batches)
    assert [b.seq for b in batches] == list(range(1, len(batches) + 1))
    # Readings keep their order across the parts, and the next chunk follows them.
    got = [r for b in batches for r in decode_telemetry(b.payload).readings]
    assert got == [*chunk, *readings(2)]


def test_seal_default_limit_is_the_contract_payload_limit() -> None:
    chunk = readings(5000, sensor="s" * 63)
    batches = seal("tn-gw-01", 1, T0, [chunk])
    assert len(batches) >= 2
    assert max(len(b.payload) for b in batches) <= MAX_PAYLOAD_BYTES
    assert sum(b.readings for b in batches) == 5000


def test_seal_refuses_a_reading_that_cannot_fit() -> None:
    with pytest.raises(ReadingTooLarge):
        seal("tn-gw-01", 1, T0, [readings(1)], max_payload_bytes=50)


def test_seal_is_deterministic() -> None:
    a = seal("tn-gw-01", 7, T0, [readings(10)])
    b = seal("tn-gw-01", 7, T0, [readings(10)])
    assert a == b
