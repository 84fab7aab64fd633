"""The sending policy (Sender) and the agent loop, with fakes: MemoryOutbox and a
MemoryPublisher that plays the broker and the ingest."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from contract.codec import decode_status, decode_telemetry
from contract.models import Reading, Status
from contract.registry import load_registry
from edge.agent import Agent
from edge.batching import seal
from edge.clock import ScaledClock
from edge.counters import Counters, EdgeStats
from edge.drivers.synthetic import ScheduledLink, SyntheticDriver
from edge.outbox import MemoryOutbox, Outbox, SqliteOutbox
from edge.publisher import Published, WatermarkReceived
from edge.sender import Sender
from edge.settings import EdgeSettings
from tests.support.edge import MemoryConnection, running

T0 = datetime(2026, 11, 28, 5, 0, tzinfo=UTC)


class MemoryPublisher(MemoryConnection):
    """The fake publisher. With ``auto=True`` it behaves like a healthy broker and ingest:
    connects when the link is up, PUBACKs every batch and acks the contiguous watermark."""

    def __init__(self, *, auto: bool = False, outbox: Outbox | None = None) -> None:
        super().__init__()
        self.auto = auto
        self.outbox = outbox
        self.link_up = False
        self.sent: list[int] = []
        self.payloads: dict[int, bytes] = {}
        self.statuses: list[Status] = []
        self.final_status: Status | None = None
        self.unstored_publishes: list[int] = []
        self._lock = threading.Lock()

    def set_link(self, up: bool) -> None:
        self.link_up = up
        if self.auto and up and not self.connected:
            self.connect()
        elif not up and self.connected:
            self.disconnect()

    def publish_batch(self, seq: int, payload: bytes) -> bool:
        if not (self.connected and self.link_up):
            return False
        if self.outbox is not None and not self.outbox.after(seq - 1, through=seq, limit=1):
            self.unstored_publishes.append(seq)
        with self._lock:
            self.sent.append(seq)
            self.payloads[seq] = payload
        if self.auto:
            self.sink(Published(seq, True))
            self.sink(WatermarkReceived(self.contiguous()))
        return True

    def contiguous(self) -> int:
        with self._lock:
            got, mark = set(self.sent), 0
        while mark + 1 in got:
            mark += 1
        return mark

    def publish_status(self, payload: bytes) -> bool:
        if not self.connected:
            return False
        self.statuses.append(decode_status(payload))
        return True

    def close(self, *, final_status: bytes | None = None, timeout_s: float = 5.0) -> bool:
        if final_status is not None:
            self.final_status = decode_status(final_status)
        return self.connected


def stored(outbox: Outbox, n: int, *, readings: int = 1) -> None:
    """Append n one-reading batches to the outbox."""
    first = outbox.last_seq + 1
    chunks = [[Reading("tn-aq-01", "pm25", T0 + timedelta(seconds=10 * s + j), 1.0) for j in range(readings)]
              for s in range(first, first + n)]
    outbox.append(seal("tn-gw-01", first, T0, chunks))


def make_sender(outbox: Outbox, pub: MemoryPublisher, **options: Any) -> tuple[Sender, Counters]:
    counters = Counters()
    settings: dict[str, Any] = {"window": 8, "live_reserve": 2, "backlog_batches_per_s": 1000.0,
                                "ack_timeout_s": 10.0, "ack_timeout_max_s": 40.0} | options
    return Sender(outbox, pub, counters, **settings), counters


def connected_pub() -> MemoryPublisher:
    pub = MemoryPublisher()
    pub.connected = pub.link_up = True
    return pub


def puback(sender: Sender, seqs: Iterator[int] | list[int] | range, now: float = 0.0) -> None:
    for s in seqs:
        sender.on_published(s, True, now)


# --- Sender ----------------------------------------------------------------------------------


def test_live_batches_go_in_order_and_never_exceed_the_window() -> None:
    box, pub = MemoryOutbox(max_bytes=10**9), connected_pub()
    sender, counters = make_sender(box, pub)
    sender.on_connected(0.0)
    stored(box, 20)
    sender.pump(0.0)
    assert pub.sent == list(range(1, 9))
    assert sender.inflight == 8
    puback(sender, [1, 2, 3])
    sender.pump(0.0)
    assert pub.sent == list(range(1, 12))
    assert sender.inflight == 8
    assert counters.batches_published == 3


def test_backlog_drains_at_the_token_bucket_rate() -> None:
    box, pub = MemoryOutbox(max_bytes=10**9), connected_pub()
    stored(box, 100)
    sender, _ = make_sender(box, pub, window=32, live_reserve=8, backlog_batches_per_s=10.0)
    sender.on_connected(0.0)
    sender.pump(0.0)
    assert len(pub.sent) == 24  # the burst: the backlog's share of the window
    puback(sender, pub.sent)
    sender.pump(0.0)
    assert len(pub.sent) == 24  # no tokens left
    assert sender.next_deadline(0.0) == pytest.approx(0.1)
    sender.pump(1.0)
    assert len(pub.sent) == 34  # 10 per second
    assert pub.sent == list(range(1, 35))  # oldest first


def test_live_batches_overtake_a_saturated_backlog() -> None:
    box, pub = MemoryOutbox(max_bytes=10**9), connected_pub()
    stored(box, 100)
    sender, _ = make_sender(box, pub, window=10, live_reserve=4)
    sender.on_connected(0.0)
    sender.pump(0.0)
    assert pub.sent == list(range(1, 7))  # the backlog holds at most window - reserve
    stored(box, 3)  # live: sealed after the connect
    sender.pump(0.0)
    assert pub.sent[6:] == [101, 102, 103]
    assert sender.inflight == 9


def test_watermark_deletes_covered_batches_and_the_cursor_skips_them() -> None:
    box, pub = MemoryOutbox(max_bytes=10**9), connected_pub()
    stored(box, 10)
    sender, counters = make_sender(box, pub)
    sender.on_connected(0.0)
    assert sender.on_watermark(5, 0.0) == 5
    sender.pump(0.0)
    assert pub.sent == [6, 7, 8, 9, 10]
    assert box.stats().batches == 5
    assert sender.on_watermark(3, 0.0) == 0  # stale
    assert counters.batches_acked == 5


def test_ack_timeout_resends_what_the_watermark_does_not_cover() -> None:
    box, pub = MemoryOutbox(max_bytes=10**9), connected_pub()
    sender, counters = make_sender(box, pub, ack_timeout_s=10.0, ack_timeout_max_s=40.0)
    sender.on_connected(0.0)
    stored(box, 5)
    sender.pump(0.0)
    puback(sender, range(1, 6), now=0.0)
    sender.on_watermark(2, 1.0)  # progress re-arms the timeout from now
    assert sender.next_deadline(1.0) == 11.0
    sender.check_ack_timeout(10.9)
    sender.pump(10.9)
    assert pub.sent == [1, 2, 3, 4, 5]
    sender.check_ack_timeout(11.0)
    sender.pump(11.0)
    assert pub.sent == [1, 2, 3, 4, 5, 3, 4, 5]
    assert (counters.batches_resent, counters.resend_rounds) == (3, 1)
    # Still no progress: the next round waits twice as long.
    puback(sender, [3, 4, 5], now=12.0)
    assert sender.next_deadline(12.0) == 32.0


def test_reconnect_resends_everything_not_covered() -> None:
    box, pub = MemoryOutbox(max_bytes=10**9), connected_pub()
    sender, counters = make_sender(box, pub)
    sender.on_connected(0.0)
    stored(box, 5)
    sender.pump(0.0)
    puback(sender, range(1, 6))
    sender.on_watermark(2, 0.0)
    sender.on_disconnected()
    stored(box, 2)  # sealed while offline: backlog at the next connect
    sender.pump(0.0)
    assert pub.sent == [1, 2, 3, 4, 5]  # nothing while disconnected
    sender.on_connected(1.0)
    sender.pump(1.0)
    assert pub.sent == [1, 2, 3, 4, 5, 3, 4, 5, 6, 7]
    assert counters.batches_resent == 3


def test_a_refused_publish_is_counted_and_kept() -> None:
    box, pub = MemoryOutbox(max_bytes=10**9), connected_pub()
    sender, counters = make_sender(box, pub)
    sender.on_connected(0.0)
    stored(box, 1)
    sender.pump(0.0)
    sender.on_published(1, False, 0.0)
    assert (counters.batches_refused, counters.batches_published) == (1, 0)
    assert box.stats().batches == 1
    assert sender.inflight == 0
    sender.check_ack_timeout(10.0)
    sender.pump(10.0)
    assert pub.sent == [1, 1]


def test_a_puback_from_an_earlier_connection_is_ignored() -> None:
    box, pub = MemoryOutbox(max_bytes=10**9), connected_pub()
    sender, counters = make_sender(box, pub)
    sender.on_connected(0.0)
    stored(box, 1)
    sender.pump(0.0)
    sender.on_disconnected()
    sender.on_published(1, True, 0.0)
    assert counters.batches_published == 0


# --- Agent -----------------------------------------------------------------------------------


def settings(tmp_path: Path, **options: Any) -> EdgeSettings:
    base: dict[str, Any] = {"mqtt_url": "mqtt://127.0.0.1:1", "edge_outbox": str(tmp_path / "outbox"),
                            "edge_flush_interval_ms": 10_000, "edge_poll_interval_ms": 5_000,
                            "edge_status_interval_s": 0.05}
    return EdgeSettings(**(base | options))


SENSORS = load_registry().sensors_of("ax-gw-02")


def make_agent(tmp_path: Path, pub: MemoryPublisher, outbox: Outbox, *, speed: float = 600.0,
               end: datetime | None = None, link: ScheduledLink | None = None, **options: Any) -> Agent:
    clock = ScaledClock(speed=speed, start=T0)
    driver = SyntheticDriver(SENSORS, start=T0, end=end)
    return Agent(settings=settings(tmp_path, **options), gateway="ax-gw-02", clock=clock, driver=driver,
                 outbox=outbox, connect=pub.bind, link=link)


def test_agent_stores_every_batch_before_publishing_it(tmp_path: Path) -> None:
    box = MemoryOutbox(max_bytes=10**9)
    pub = MemoryPublisher(auto=True, outbox=box)
    end = T0 + timedelta(minutes=10)
    with running(make_agent(tmp_path, pub, box, end=end), join_timeout_s=30) as agent:
        stats = agent.wait_until(lambda s: s.at > end + timedelta(seconds=20)
                                 and s.outbox.batches == 0 and s.counters.batches_created > 0, 20)
    assert pub.unstored_publishes == []
    assert sorted(set(pub.sent)) == list(range(1, stats.counters.batches_created + 1))
    expected = SyntheticDriver(SENSORS, start=T0).poll(end)
    got = [r for s in sorted(pub.payloads) for r in decode_telemetry(pub.payloads[s]).readings]
    assert got == expected


def test_agent_keeps_reading_into_the_outbox_while_the_link_is_down(tmp_path: Path) -> None:
    box = MemoryOutbox(max_bytes=10**9)
    pub = MemoryPublisher(auto=True, outbox=box)
    down = (T0, T0 + timedelta(minutes=10))
    with running(make_agent(tmp_path, pub, box, link=ScheduledLink([down])), join_timeout_s=30) as agent:
        offline = agent.wait_until(lambda s: s.counters.batches_created >= 5, 20)
        assert not offline.link_up and not offline.connected
        assert pub.sent == [] and offline.outbox.batches >= 5
        back = agent.wait_until(lambda s: s.link_up and s.outbox.batches == 0
                                and s.counters.batches_created > offline.counters.batches_created, 20)
    assert back.counters.link_downs == 1
    assert set(pub.sent) >= set(range(1, offline.counters.batches_created + 1))


def test_agent_stop_seals_the_open_batch_and_publishes_offline_status(tmp_path: Path) -> None:
    box = MemoryOutbox(max_bytes=10**9)
    pub = MemoryPublisher(auto=True)
    agent = make_agent(tmp_path, pub, box, speed=60.0, edge_flush_interval_ms=3_600_000)
    with running(agent, join_timeout_s=30):
        agent.wait_until(lambda s: s.counters.readings > 0 and s.connected, 20)
        assert box.last_seq == 0  # nothing is due yet: the batch is open
    assert box.last_seq >= 1
    assert pub.final_status is not None
    assert (pub.final_status.state, pub.final_status.last_seq) == ("offline", box.last_seq)
    sealed = sum(b.readings for b in box.after(0, through=box.last_seq, limit=100))
    assert sealed == agent.snapshot().counters.readings


def test_agent_seq_continues_after_a_restart(tmp_path: Path) -> None:
    with SqliteOutbox(tmp_path / "outbox", max_bytes=10**9) as box:
        pub = MemoryPublisher()  # never connects: everything stays in the outbox
        with running(make_agent(tmp_path, pub, box), join_timeout_s=30) as agent:
            agent.wait_until(lambda s: s.counters.batches_created >= 3, 20)
        first_run = box.last_seq
    with SqliteOutbox(tmp_path / "outbox", max_bytes=10**9) as box:
        pub = MemoryPublisher(auto=True)
        with running(make_agent(tmp_path, pub, box), join_timeout_s=30) as agent:
            agent.wait_until(lambda s: s.counters.batches_created >= 2
                             and s.outbox.batches == 0, 20)
    assert pub.sent[:first_run] == list(range(1, first_run + 1))  # the backlog, oldest first
    assert max(pub.sent) > first_run


def test_agent_reports_outbox_drops_in_its_status(tmp_path: Path) -> None:
    box = MemoryOutbox(max_bytes=4000)
    pub = MemoryPublisher(auto=True)
    down = (T0, T0 + timedelta(minutes=10))
    with running(make_agent(tmp_path, pub, box, link=ScheduledLink([down])), join_timeout_s=30) as agent:
        stats = agent.wait_until(lambda s: s.connected and len(pub.statuses) > 0, 20)
    status = pub.statuses[0]
    assert status.state == "online"
    assert status.dropped_batches > 0 and status.dropped_through > 0
    # The status agrees with itself; the agent may drop once more between that status and the
    # moment the test reads its stats (a loaded machine: 38 in the status, 39 after).
    assert status.counters["batches_dropped"] == status.dropped_batches
    assert status.dropped_batches <= stats.counters.batches_dropped == stats.outbox.dropped_batches
    # What is left is sent, from the oldest kept.
    assert status.dropped_through + 1 <= min(pub.sent) <= stats.outbox.dropped_through + 1


def test_agent_snapshot_serialises(tmp_path: Path) -> None:
    snap = make_agent(tmp_path, MemoryPublisher(), MemoryOutbox(max_bytes=10)).snapshot()
    assert isinstance(snap, EdgeStats)
    assert snap.as_dict()["last_seq"] == 0


