"""The edge agent against a real Mosquitto (the project configuration), with a fast clock.

The agent runs in-process (its own thread), built by the same composition root as the
command line (edge.app.open_agent). The synthetic driver gives the ground truth: exactly
which readings a gateway produced over a simulated interval.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from contract.codec import decode_telemetry
from contract.models import MAX_PAYLOAD_BYTES, Reading
from contract.registry import load_registry
from edge.agent import Agent
from edge.app import open_agent
from edge.clock import Clock, ScaledClock
from edge.counters import EdgeStats
from edge.drivers.base import Driver, LinkProbe
from edge.drivers.simulated import open_simulation
from edge.drivers.synthetic import ScheduledLink, SyntheticDriver
from edge.outbox import SqliteOutbox
from edge.settings import EdgeSettings
from simulators.fleet import GatewaySimulator
from simulators.scenarios import get_scenario
from tests.servers.mosquitto import IngestFactory, MosquittoFactory
from tests.support.edge import running

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

REGISTRY = load_registry()
GW = "ax-gw-02"  # sensors every 10 s and 60 s: a batch every 10 s of clock time
SENSORS = REGISTRY.sensors_of(GW)
T0 = datetime(2026, 11, 28, 0, 0, tzinfo=UTC)
FLUSH = timedelta(seconds=5)


def expected_readings(start: datetime, end: datetime) -> list[Reading]:
    return SyntheticDriver(SENSORS, start=start).poll(end)


def fast_settings(tmp_path: Path, url: str, **options: Any) -> EdgeSettings:
    """Test timings: network timers in tenths of seconds instead of tens."""
    base: dict[str, Any] = {
        "mqtt_url": url,
        "edge_outbox": str(tmp_path / "outbox"),
        "edge_flush_interval_ms": int(FLUSH.total_seconds() * 1000),
        "edge_poll_interval_ms": 5_000,
        "edge_ack_timeout_s": 1.0,
        "edge_ack_timeout_max_s": 2.0,
        "edge_status_interval_s": 1.0,
        "edge_reconnect_min_s": 0.05,
        "edge_reconnect_max_s": 0.5,
        "edge_connect_timeout_s": 2.0,
        "edge_keepalive_s": 5,
        "edge_backlog_batches_per_s": 500.0,
    }
    return EdgeSettings(**(base | options))


@contextmanager
def edge_agent(tmp_path: Path, url: str, *, speed: float = 1.0, end: datetime | None = None,
               link: LinkProbe | None = None, driver: Driver | None = None, gateway: str = GW,
               clock: Clock | None = None, **options: Any) -> Iterator[Agent]:
    settings = fast_settings(tmp_path, url, **options)
    clock = clock or ScaledClock(speed=speed, start=T0)
    driver = driver or SyntheticDriver(SENSORS, start=T0, end=end)
    with (open_agent(settings, REGISTRY, gateway, clock=clock, driver=driver, link=link) as agent,
          running(agent)):
        yield agent


def drained(end: datetime) -> Any:
    """Snapshot predicate: the clock is past ``end`` (+ a flush), and the outbox is empty."""
    def check(s: EdgeStats) -> bool:
        return (s.at > end + 2 * FLUSH and s.outbox.batches == 0
                and s.counters.batches_created > 0)
    return check


def test_edge_publishes_a_simulated_hour_and_every_batch_arrives_as_sent(
    tmp_path: Path, mosquitto: MosquittoFactory, recording_ingest: IngestFactory
) -> None:
    broker = mosquitto()
    ingest = recording_ingest(broker.url, acking=False)  # keep every batch in the outbox
    end = T0 + timedelta(hours=1)
    with edge_agent(tmp_path, broker.url, speed=900, end=end) as agent:
        stats = agent.wait_until(lambda s: s.at > end + 2 * FLUSH, 30)
        n = stats.outbox.last_seq
        ingest.wait_for(lambda: ingest.seqs(GW) >= set(range(1, n + 1)), 20, f"seqs 1..{n}")
    with SqliteOutbox(tmp_path / "outbox", max_bytes=10**9) as outbox:
        stored = {b.seq: b.payload for b in outbox.after(0, through=outbox.last_seq, limit=10**6)}
        assert outbox.last_seq == n
    assert n >= 100  # up to one batch per 10 s of readings (fewer when the loop lags the fast clock)
    assert set(stored) == set(range(1, n + 1))  # nothing deleted on PUBACK alone
    copies = ingest.copies(GW)
    assert set(copies) == set(range(1, n + 1))
    for seq, payloads in copies.items():
        assert payloads == {stored[seq]}, f"seq {seq} arrived different from what was stored"
    readings = [r for seq in range(1, n + 1) for r in decode_telemetry(stored[seq]).readings]
    assert readings == expected_readings(T0, end)


def test_edge_keeps_batches_until_the_ack_watermark_covers_them(
    tmp_path: Path, mosquitto: MosquittoFactory, recording_ingest: IngestFactory
) -> None:
    broker = mosquitto()
    ingest = recording_ingest(broker.url, acking=False)
    end = T0 + timedelta(minutes=20)
    with edge_agent(tmp_path, broker.url, speed=600, end=end) as agent:
        stats = agent.wait_until(lambda s: s.at > end + 2 * FLUSH, 20)
        n = stats.outbox.last_seq
        stats = agent.wait_until(lambda s: s.counters.batches_published >= n, 10)
        # A loaded agent may seal its last batch after the clock passed ``end`` (one more seq):
        # every count below is against the seqs it had at that moment.
        assert stats.outbox.batches == stats.outbox.last_seq >= n  # all PUBACKed, all kept
        half = n // 2
        ingest.set_acking(True, limit=half)
        stats = agent.wait_until(lambda s: s.watermark == half, 10)
        assert stats.outbox.batches == stats.outbox.last_seq - half
        ingest.set_acking(True)
        stats = agent.wait_until(lambda s: s.outbox.batches == 0, 10)
    last = stats.outbox.last_seq
    assert last >= n and stats.watermark == last and stats.counters.batches_acked == last
    assert stats.outbox.bytes == 0


def test_edge_loses_nothing_when_the_broker_is_killed_mid_stream(
    tmp_path: Path, mosquitto: MosquittoFactory, recording_ingest: IngestFactory
) -> None:
    # Mosquitto's default queues, and an ingest without a session that comes back late:
    # whatever the edge publishes before the ingest resubscribes is gone, PUBACK or not.
    broker = mosquitto(queue_defaults=True)
    ingest = recording_ingest(broker.url, persistent=False, auto_reconnect=False)
    end = T0 + timedelta(minutes=40)
    with edge_agent(tmp_path, broker.url, speed=300, end=end) as agent:
        ingest.wait_for(lambda: ingest.watermark(GW) >= 20, 20, "20 batches stored")
        broker.kill9()
        offline = agent.wait_until(lambda s: not s.connected, 10)
        agent.wait_until(lambda s: s.counters.batches_created >= offline.counters.batches_created + 10, 10)
        broker.start()
        before = agent.wait_until(lambda s: s.counters.connects >= 2, 10)
        agent.wait_until(lambda s: s.counters.batches_published >= before.counters.batches_published + 10, 10)
        ingest.reconnect()  # after the edge has re-sent its backlog: the ingest missed it
        stats = agent.wait_until(drained(end), 40)
    n = stats.outbox.last_seq
    assert ingest.seqs(GW) == set(range(1, n + 1))
    assert stats.counters.resend_rounds >= 1  # the ack timeout closed the gap
    readings = [r for seq, b in sorted(ingest.batches(GW).items()) for r in b.readings]
    assert readings == expected_readings(T0, end)


def test_edge_drains_two_hours_without_signal_while_live_data_flows(
    tmp_path: Path, mosquitto: MosquittoFactory, recording_ingest: IngestFactory
) -> None:
    broker = mosquitto()
    ingest = recording_ingest(broker.url)
    down = (T0 + timedelta(minutes=5), T0 + timedelta(hours=2, minutes=5))
    end = down[1] + timedelta(minutes=20)
    rate = 150.0
    with edge_agent(tmp_path, broker.url, speed=1200, end=end, link=ScheduledLink([down]),
                    edge_backlog_batches_per_s=rate) as agent:
        offline = agent.wait_until(lambda s: not s.link_up and s.at > down[0] + timedelta(minutes=30), 20)
        assert not offline.connected
        ingest.wait_for(lambda: any(st.state == "offline" for st in ingest.statuses[GW]), 10,
                        "the Will announced the gateway offline")
        stats = agent.wait_until(drained(end), 40)
    n = stats.outbox.last_seq
    assert ingest.seqs(GW) == set(range(1, n + 1))
    batches = ingest.batches(GW)
    readings = [r for _, b in sorted(batches.items()) for r in b.readings]
    assert readings == expected_readings(T0, end)  # every reading, with its own timestamp

    # Backlog: sealed while the link was down. Live: sealed after it came back.
    backlog = {s for s, b in batches.items() if down[0] <= b.sent_at < down[1]}
    live = {s for s, b in batches.items() if b.sent_at >= down[1]}
    assert len(backlog) >= 300 and len(live) >= 50
    first_arrival: dict[int, float] = {}
    for a in ingest.arrivals:
        first_arrival.setdefault(a.seq, a.at)
    backlog_done = max(first_arrival[s] for s in backlog)
    live_during_drain = [s for s in live if first_arrival[s] < backlog_done]
    span = backlog_done - min(first_arrival[s] for s in backlog)
    assert len(live_during_drain) >= 50, "live batches waited for the backlog"
    # Rate-limited: the backlog took at least (batches - burst) / rate to drain.
    assert span >= 0.8 * (len(backlog) - 24) / rate


def test_edge_drops_oldest_past_the_outbox_cap_and_reports_it(
    tmp_path: Path, mosquitto: MosquittoFactory, recording_ingest: IngestFactory
) -> None:
    broker = mosquitto()
    ingest = recording_ingest(broker.url)
    down = (T0, T0 + timedelta(minutes=30))
    end = down[1] - timedelta(minutes=1)  # every batch is sealed (and dropped) while offline
    cap = 40_000
    with edge_agent(tmp_path, broker.url, speed=1200, end=end, link=ScheduledLink([down]),
                    edge_outbox_max_bytes=cap) as agent:
        offline = agent.wait_until(lambda s: s.counters.batches_dropped > 0, 20)
        assert offline.outbox.bytes <= cap
        stats = agent.wait_until(drained(end), 30)
        ingest.wait_for(lambda: ingest.last_status(GW) is not None, 10, "a status")
    status = ingest.last_status(GW)
    assert status is not None
    dropped_through = stats.outbox.dropped_through
    assert stats.counters.batches_dropped == stats.outbox.dropped_batches == dropped_through
    assert (status.dropped_batches, status.dropped_through) == (stats.outbox.dropped_batches, dropped_through)
    n = stats.outbox.last_seq
    # Dropped before they were ever sent (the link was down from the start): a declared gap,
    # which the ingest's watermark passes over, and everything after it arrived.
    assert ingest.seqs(GW) == set(range(dropped_through + 1, n + 1))
    assert ingest.watermark(GW) == n
    received = sum(len(b.readings) for b in ingest.batches(GW).values())
    assert received + stats.outbox.dropped_readings == len(expected_readings(T0, end))


class BurstDriver:
    """5000 readings with the longest ids in one poll: about 1 MB as a single batch."""

    def __init__(self) -> None:
        self.done = False

    def poll(self, now: datetime) -> list[Reading]:
        if self.done:
            return []
        self.done = True
        return [Reading("s" * 63, "m" * 63, T0 + timedelta(milliseconds=i), i + 0.123456789)
                for i in range(5000)]


def test_edge_splits_an_oversize_batch_and_never_publishes_over_256_kib(
    tmp_path: Path, mosquitto: MosquittoFactory, recording_ingest: IngestFactory
) -> None:
    broker = mosquitto()
    ingest = recording_ingest(broker.url)
    with edge_agent(tmp_path, broker.url, speed=10, driver=BurstDriver(),
                    edge_batch_max_readings=5000) as agent:
        stats = agent.wait_until(lambda s: s.counters.batches_created > 0
                                 and s.outbox.batches == 0, 20)
    n = stats.counters.batches_created
    assert n >= 4 and stats.counters.batches_split == n - 1
    assert ingest.seqs(GW) == set(range(1, n + 1))
    assert max(len(a.payload) for a in ingest.arrivals) <= MAX_PAYLOAD_BYTES
    assert sum(len(b.readings) for b in ingest.batches(GW).values()) == 5000
    assert stats.counters.disconnects == 0 and stats.counters.batches_refused == 0


def test_edge_fails_over_to_the_next_broker_url(
    tmp_path: Path, mosquitto: MosquittoFactory, recording_ingest: IngestFactory
) -> None:
    dead = mosquitto(start=False)  # a configured port nobody listens on
    broker = mosquitto()
    ingest = recording_ingest(broker.url)
    end = T0 + timedelta(minutes=5)
    with edge_agent(tmp_path, f"{dead.url},{broker.url}", speed=300, end=end) as agent:
        stats = agent.wait_until(drained(end), 20)
    assert stats.counters.connect_failures >= 1 and stats.counters.connects == 1
    assert ingest.seqs(GW) == set(range(1, stats.counters.batches_created + 1))


def test_edge_carries_the_simulators_network_outage_scenario(
    tmp_path: Path, mosquitto: MosquittoFactory, recording_ingest: IngestFactory
) -> None:
    gateway = "qt-gw-01"  # loses signal for 2 h, one hour after the start
    broker = mosquitto()
    ingest = recording_ingest(broker.url)
    # The simulated clock never runs ahead of the wall clock: start 5 h back.
    start = (datetime.now(UTC) - timedelta(hours=5)).replace(minute=0, second=0, microsecond=0)
    end = start + timedelta(hours=4)
    sim = open_simulation(REGISTRY, gateway, speed=2400, seed=7, scenario="network-outage", start=start)
    with edge_agent(tmp_path, broker.url, gateway=gateway, clock=sim.clock, driver=sim.driver,
                    link=sim.driver) as agent:
        stats = agent.wait_until(drained(end), 40)
    assert stats.counters.link_downs == 1
    assert any(s.state == "offline" for s in ingest.statuses[gateway])  # the Will, at the outage
    n = stats.outbox.last_seq  # the simulators run on: the agent sealed more until it stopped
    ingest.wait_for(lambda: ingest.watermark(gateway) >= n, 10, "everything stored")
    assert ingest.seqs(gateway) == set(range(1, max(ingest.seqs(gateway)) + 1))
    readings = [r for _, b in sorted(ingest.batches(gateway).items()) for r in b.readings]
    truth = GatewaySimulator(REGISTRY, gateway, seed=7, start=start,
                             scenario=get_scenario("network-outage", start=start, registry=REGISTRY))
    assert readings == truth.advance(readings[-1].ts)
