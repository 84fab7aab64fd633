"""The broker-log watcher stores each denial once across restarts of the ops center, and
misses none that the broker logged while it was away."""

from __future__ import annotations

import threading
from pathlib import Path

from contract.registry import load_registry
from ops_center.adapters.records import Page, SecurityEventRecord
from ops_center.feed import Feed
from ops_center.security.broker_log import BrokerLogParser
from ops_center.security.broker_watch import BrokerLogWatcher, resume_point

REG = load_registry()


def denied(ts: str, topic: str = "smartward/v1/quang-trung/qt-gw-01/telemetry") -> str:
    return f"{ts}: Denied PUBLISH from tn-gw-01 (d0, q1, r0, m1, '{topic}', ... (9 bytes))\n"


class MemoryEvents:
    def __init__(self) -> None:
        self.rows: list[SecurityEventRecord] = []
        self.inserted = threading.Condition()

    def insert_security_event(self, event: SecurityEventRecord) -> int:
        with self.inserted:
            self.rows.append(event)
            self.inserted.notify_all()
            return len(self.rows)

    def security_events(self, sites: None, limit: int, offset: int) -> Page[SecurityEventRecord]:
        newest_first = list(reversed(self.rows))
        return Page(newest_first[offset:offset + limit], len(self.rows))

    def wait_for(self, count: int, timeout_s: float = 5.0) -> None:
        with self.inserted:
            assert self.inserted.wait_for(lambda: len(self.rows) >= count, timeout_s), self.rows


def test_resume_point_counts_the_events_of_the_newest_second() -> None:
    store = MemoryEvents()
    assert resume_point(store) == (None, 0)
    log_lines = [denied("2026-11-28T05:00:00"), denied("2026-11-28T05:00:01"), denied("2026-11-28T05:00:01")]
    for line in log_lines:
        event = BrokerLogParser(REG).parse(line)
        assert event is not None
        store.insert_security_event(event)
    newest, same = resume_point(store)
    assert newest is not None and newest.second == 1 and same == 2


def test_a_restarted_watcher_stores_nothing_twice_and_misses_nothing(tmp_path: Path) -> None:
    log = tmp_path / "mosquitto.log"
    log.write_text(denied("2026-11-28T05:00:00") + denied("2026-11-28T05:00:01"))
    store = MemoryEvents()
    first = BrokerLogWatcher(log, REG, store, Feed(ring_size=64, queue_max=16), poll_s=0.01)
    first.start()
    store.wait_for(2)
    first.stop()
    # While the ops center is away the broker logs two more denials, one in the same second as
    # the last one already stored.
    with log.open("a") as f:
        f.write(denied("2026-11-28T05:00:01", topic="smartward/v1/an-xa/ax-gw-01/telemetry"))
        f.write(denied("2026-11-28T05:00:02"))
    second = BrokerLogWatcher(log, REG, store, Feed(ring_size=64, queue_max=16), poll_s=0.01)
    second.start()
    store.wait_for(4)
    # A third line, written while the watcher follows the file, arrives too.
    with log.open("a") as f:
        f.write(denied("2026-11-28T05:00:03"))
    store.wait_for(5)
    second.stop()
    assert len(store.rows) == 5
    assert [e.at.second for e in store.rows] == [0, 1, 1, 2, 3]
    assert "an-xa/ax-gw-01" in store.rows[2].detail


def test_a_full_broker_queue_is_reported_as_a_queue_drop() -> None:
    line = "2026-11-28T05:00:07: Outgoing messages are being dropped for client ingest-2.\n"
    event = BrokerLogParser(REG).parse(line)
    assert event is not None
    assert (event.kind, event.client, event.site, event.source) == ("queue_drop", "ingest-2", None, "broker")
    assert "hàng đợi đầy" in event.detail and "queue is full" in event.detail


def test_an_oversize_packet_is_reported_with_its_gateway() -> None:
    # The exact line of Mosquitto 2.0.11 (tests/integration/test_security_broker_oversize.py).
    parser = BrokerLogParser(REG)
    event = parser.parse("2026-12-07T08:46:48: Client tn-gw-01 disconnected due to oversize packet.\n")
    assert event is not None and event.kind == "oversize_packet"
    assert (event.site, event.gateway, event.client) == ("thong-nhat", "tn-gw-01", "tn-gw-01")
    assert parser.parse("2026-12-07T08:46:48: New connection from 10.0.0.7:4242 on port 1883.\n") is None
    anon = parser.parse("1764306000: Client <unknown> disconnected due to oversize packet.\n")
    assert anon is not None and anon.client is None and anon.site is None and anon.ip == "10.0.0.7"
