"""The outbox contract, run against the SQLite adapter and the in-memory fake alike."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from contract.models import Reading
from edge.batching import SealedBatch, seal
from edge.errors import OutboxError, OutboxLocked
from edge.outbox import MemoryOutbox, Outbox, SqliteOutbox

T0 = datetime(2026, 11, 28, 5, 0, tzinfo=UTC)
OutboxFactory = Callable[[int], Outbox]


def batches(first_seq: int, n: int, *, readings: int = 2) -> list[SealedBatch]:
    """Batches first_seq.. (n of them); batch s is sealed at T0 + s seconds."""
    out: list[SealedBatch] = []
    for s in range(first_seq, first_seq + n):
        chunk = [Reading("tn-aq-01", "pm25", T0 + timedelta(seconds=s * 10 + j), 1.0)
                 for j in range(readings)]
        out += seal("tn-gw-01", s, T0 + timedelta(seconds=s), [chunk])
    return out


@pytest.fixture(params=["sqlite", "memory"])
def make_outbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OutboxFactory]:
    opened: list[Outbox] = []

    def make(max_bytes: int = 10**9) -> Outbox:
        box: Outbox = (SqliteOutbox(tmp_path / "outbox", max_bytes=max_bytes) if request.param == "sqlite"
                       else MemoryOutbox(max_bytes=max_bytes))
        opened.append(box)
        return box

    yield make
    for box in opened:
        box.close()


def test_outbox_stores_batches_with_contiguous_seqs(make_outbox: OutboxFactory) -> None:
    box = make_outbox()
    assert box.last_seq == 0
    box.append(batches(1, 3))
    box.append(batches(4, 2))
    st = box.stats()
    assert (st.last_seq, st.batches) == (5, 5)
    assert st.bytes == sum(len(b.payload) for b in batches(1, 5))
    assert st.oldest == batches(1, 1)[0].created_at
    assert [b.seq for b in box.after(0, through=5, limit=100)] == [1, 2, 3, 4, 5]
    assert box.after(0, through=5, limit=100) == batches(1, 5)


def test_outbox_refuses_a_seq_that_does_not_continue(make_outbox: OutboxFactory) -> None:
    box = make_outbox()
    box.append(batches(1, 2))
    with pytest.raises(OutboxError):
        box.append(batches(4, 1))
    with pytest.raises(OutboxError):
        box.append(batches(2, 1))
    assert box.last_seq == 2


def test_outbox_keeps_batches_until_the_watermark_covers_them(make_outbox: OutboxFactory) -> None:
    box = make_outbox()
    box.append(batches(1, 10))
    assert box.ack(4) == 4
    assert [b.seq for b in box.after(0, through=100, limit=100)] == [5, 6, 7, 8, 9, 10]
    assert box.stats().batches == 6
    assert box.stats().oldest == batches(5, 1)[0].created_at
    assert box.ack(3) == 0  # a watermark never moves back
    assert box.acked_through == 4
    assert box.ack(10) == 6
    assert box.stats().batches == 0 and box.stats().bytes == 0 and box.stats().oldest is None


def test_outbox_clamps_a_watermark_beyond_its_last_seq(make_outbox: OutboxFactory) -> None:
    box = make_outbox()
    box.append(batches(1, 3))
    assert box.ack(1000) == 3
    assert box.acked_through == 3
    box.append(batches(4, 2))  # later batches are not covered by the stale watermark
    assert box.stats().batches == 2


def test_outbox_after_returns_a_bounded_ordered_range(make_outbox: OutboxFactory) -> None:
    box = make_outbox()
    box.append(batches(1, 10))
    assert [b.seq for b in box.after(3, through=8, limit=3)] == [4, 5, 6]
    assert [b.seq for b in box.after(6, through=8, limit=10)] == [7, 8]
    assert box.after(8, through=8, limit=10) == []


def test_outbox_drops_oldest_only_past_the_cap_and_counts(make_outbox: OutboxFactory) -> None:
    size = len(batches(1, 1)[0].payload)
    box = make_outbox(max_bytes=size * 5 + size // 2)  # room for 5 batches
    assert box.append(batches(1, 5)).dropped_batches == 0
    result = box.append(batches(6, 3))
    assert (result.dropped_batches, result.dropped_readings, result.dropped_through) == (3, 6, 3)
    assert [b.seq for b in box.after(0, through=100, limit=100)] == [4, 5, 6, 7, 8]
    st = box.stats()
    assert (st.dropped_batches, st.dropped_readings, st.dropped_through) == (3, 6, 3)
    assert (st.bytes, st.batches) == (5 * size, 5)
    box.append(batches(9, 1))
    st = box.stats()
    assert (st.dropped_batches, st.dropped_through) == (4, 4)


def test_outbox_keeps_the_newest_batch_even_over_the_cap(make_outbox: OutboxFactory) -> None:
    box = make_outbox(max_bytes=10)
    box.append(batches(1, 3))
    assert [b.seq for b in box.after(0, through=100, limit=100)] == [3]
    assert box.stats().dropped_through == 2


def test_sqlite_outbox_survives_a_restart(tmp_path: Path) -> None:
    size = len(batches(1, 1)[0].payload)
    with SqliteOutbox(tmp_path, max_bytes=size * 3 + 1) as box:
        box.append(batches(1, 5))
        box.ack(3)
    with SqliteOutbox(tmp_path, max_bytes=size * 3 + 1) as box:
        st = box.stats()
        assert (st.last_seq, st.acked_through, st.batches) == (5, 3, 2)
        assert (st.dropped_batches, st.dropped_through) == (2, 2)
        assert st.bytes == 2 * size
        box.append(batches(6, 1))  # seq continues after the restart
        assert box.last_seq == 6


def test_sqlite_outbox_refuses_a_second_agent(tmp_path: Path) -> None:
    with SqliteOutbox(tmp_path, max_bytes=10**6), pytest.raises(OutboxLocked):
        SqliteOutbox(tmp_path, max_bytes=10**6)
    SqliteOutbox(tmp_path, max_bytes=10**6).close()  # free again once the first is closed


def test_sqlite_outbox_is_wal_with_full_sync(tmp_path: Path) -> None:
    with SqliteOutbox(tmp_path, max_bytes=10**6) as box:
        box.append(batches(1, 1))
        db = box._db
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    # A committed batch is on disk for any other reader.
    other = sqlite3.connect(tmp_path / "outbox.db")
    assert other.execute("SELECT seq FROM batch").fetchall() == [(1,)]
    other.close()
