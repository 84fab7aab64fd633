"""R3: the ingest is offline during a burst longer than the broker's queue -> lost 0, dup 0.

Everything real and in-process: the project's Mosquitto configuration with a per-client queue
of 100 messages, the edge agent (edge.app.open_agent) with the deterministic synthetic driver
on a fast clock, and the ingest worker with a SQLite store. The ingest subscribes with a
persistent session and a fixed client id, then stops cleanly (its session stays on the
broker); the edge publishes hundreds of batches while it is away, so the broker queues the
first ones and silently drops the rest, each PUBACKed to the edge all the same. When the
ingest comes back with the same client id, the broker hands over its queue, and the edge's ack
timeout re-sends everything past the watermark: the store ends with every batch and every
reading exactly once.
"""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from contract.registry import load_registry
from edge.counters import EdgeStats
from ingest.metrics import IngestMetrics
from ingest.stores import open_store
from ingest.stores.sqlite import sqlite_time
from ingest.worker import IngestWorker
from ops_center.security.broker_log import BrokerLogParser
from tests.integration.test_edge_mqtt import FLUSH, GW, T0, edge_agent, expected_readings
from tests.integration.test_ingest_worker import settings_for
from tests.servers.mosquitto import MosquittoFactory
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

REGISTRY = load_registry()
CLIENT_ID = "r3-ingest"
BROKER_QUEUE = 100  # max_queued_messages for this test's broker
MAX_INFLIGHT = 100  # the project's max_inflight_messages (unchanged)
MIN_BURST = 400  # batches published while the ingest is away


def stored(db: Path) -> tuple[list[tuple[str, int]], list[tuple[str, str, str, float]]]:
    """(gateway, seq) of every stored batch and (sensor, metric, time, value) of every reading."""
    with sqlite3.connect(db) as c:
        batches = [(g, int(s)) for g, s in c.execute(
            "SELECT gateway, seq FROM ingest_batches WHERE outcome = 'stored' ORDER BY gateway, seq")]
        readings = [(s, m, t, float(v)) for s, m, t, v in c.execute(
            "SELECT sensor, metric, time, value FROM readings WHERE gateway = ?", (GW,))]
    return batches, readings


def test_r3_ingest_offline_during_a_burst_longer_than_the_broker_queue_loses_nothing(
    tmp_path: Path, mosquitto: MosquittoFactory
) -> None:
    broker = mosquitto(overrides={"max_queued_messages": str(BROKER_QUEUE), "max_queued_bytes": None})
    db = tmp_path / "r3.db"
    store = open_store(f"sqlite:///{db}")
    store.migrate()
    settings = settings_for(broker.url)
    try:
        # 1. The ingest subscribes with a persistent session, then stops cleanly: the session
        #    (and its subscription) stays on the broker, which now queues for it.
        first = IngestWorker(settings, store, REGISTRY, metrics=IngestMetrics(), client_id=CLIENT_ID)
        with first:
            wait_until(lambda: first.ready, 10, "ingest ready")
        assert stored(db) == ([], [])

        end = T0 + timedelta(hours=2)  # a batch per 10 s of clock time: up to 720 batches
        with edge_agent(tmp_path, broker.url, speed=800, end=end,
                        edge_ack_timeout_s=0.5, edge_ack_timeout_max_s=1.0) as agent:
            # 2. The burst: the whole interval sealed, and every batch PUBACKed by the broker,
            #    with nobody to deliver it to.
            def burst_published(s: EdgeStats) -> bool:
                return (s.at > end + 2 * FLUSH and s.outbox.last_seq > 0
                        and s.counters.batches_published >= s.outbox.last_seq)

            away = agent.wait_until(burst_published, 25)
            n = away.outbox.last_seq
            assert n >= MIN_BURST, f"only {n} batches in the burst"
            assert away.watermark == 0 and away.outbox.batches == n  # nothing acked, all kept
            assert stored(db) == ([], [])

            # 3. The ingest comes back with the same client id: the broker's queue, then the
            #    edge's re-sends, until the watermark covers the last seq.
            metrics = IngestMetrics()
            second = IngestWorker(settings, store, REGISTRY, metrics=metrics, client_id=CLIENT_ID)
            with second:
                wait_until(lambda: second.ready, 10, "ingest ready again")
                done = agent.wait_until(lambda s: s.watermark == n and s.outbox.batches == 0, 30)
        assert not first.fatal and not second.fatal
    finally:
        store.close()

    batches, readings = stored(db)
    assert batches == [(GW, seq) for seq in range(1, n + 1)]  # lost 0, dup 0 (one row per seq)
    expected = [(r.sensor, r.metric, sqlite_time(r.ts), r.value) for r in expected_readings(T0, end)]
    assert len(readings) == len(expected) == len(set(expected))
    assert sorted(readings) == sorted(expected)  # every reading the driver produced, once
    assert done.outbox.last_seq == n and done.counters.batches_dropped == 0

    # The broker did drop: it PUBACKed n batches for an absent subscriber that can hold at most
    # its queue (plus an inflight window), and the log says so; the edge's ack-timeout re-sends,
    # counted after the ingest came back, are what recovered them.
    assert n > BROKER_QUEUE + MAX_INFLIGHT
    broker.stop()  # Mosquitto's stdout log reaches the file when it exits
    assert "Outgoing messages are being dropped" in broker.log_text()
    # ... and the ops center's broker-log watcher reports it (R3: "the drop shows up").
    parser = BrokerLogParser(REGISTRY)
    reported = [e for e in map(parser.parse, broker.log_text().splitlines()) if e is not None]
    assert any(e.kind == "queue_drop" and e.client == CLIENT_ID for e in reported), reported
    resent_after = done.counters.batches_resent - away.counters.batches_resent
    rounds_after = done.counters.resend_rounds - away.counters.resend_rounds
    assert rounds_after >= 1 and resent_after >= n - (BROKER_QUEUE + MAX_INFLIGHT)
    received = int(metrics.received.labels("telemetry")._value.get())
    print(f"R3: burst {n} batches, {len(expected)} readings; broker queue {BROKER_QUEUE}: "
          f">= {n - BROKER_QUEUE - MAX_INFLIGHT} dropped; after the ingest came back: "
          f"{resent_after} re-sent in "
          f"{rounds_after} round(s), {received} telemetry messages received, "
          f"{int(metrics.duplicates._value.get())} duplicates ignored")
