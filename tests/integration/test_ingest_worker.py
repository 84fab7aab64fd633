"""The worker in-process against a real Mosquitto, with the in-memory store: stream, redelivery,
watermarks, dropped_through, store outage (R7 shape), malformed input (B1), time window (B3),
broker failover."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from contract import topics
from contract.registry import load_registry
from ingest.pipeline import TimeWindow, classify
from ingest.ports import DeadLetter, ValidBatch, WriteResult
from ingest.settings import IngestSettings
from ingest.worker import IngestWorker
from tests.support.ingest import AckWatcher, Publisher, acks, broker, broker_url, gateways, pub
from tests.support.waiting import wait_until
from tests.unit.test_ingest_worker import FakeStore

pytestmark = pytest.mark.integration
__all__ = ["acks", "broker", "pub"]

REG = load_registry()


def settings_for(url: str, **over: Any) -> IngestSettings:
    base: dict[str, Any] = {
        "mqtt_url": url,
        "receive_maximum": 200,
        "batch_max_messages": 100,
        "batch_max_ms": 20,
        "store_retry_initial_ms": 20,
        "store_retry_max_ms": 200,
        "stop_grace_s": 1.0,
        "store_ping_interval_s": 0.2,
        "gap_check_interval_ms": 50,
    }
    base.update(over)
    return IngestSettings(**base)


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def worker(broker: Any, store: FakeStore) -> Iterator[IngestWorker]:
    w = IngestWorker(settings_for(broker_url(broker)), store, REG, client_id="test-ingest")
    with w:
        wait_until(lambda: w.ready, 10, "worker ready")
        yield w


def test_steady_stream_from_three_sites_is_stored_once_and_acked(
    worker: IngestWorker, store: FakeStore, pub: Publisher, acks: AckWatcher
) -> None:
    gws = []
    for site in ("thong-nhat", "quang-trung", "an-xa"):
        gws += [g for g in gateways() if g[0] == site][:2]
    n = 150
    for site, gw, pairs in gws:
        pub.send(site, gw, pairs, range(1, n + 1))
    for _, gw, _ in gws:
        assert acks.wait_for(gw, n), (gw, acks.marks.get(gw))
    assert sorted(store.batches) == sorted((gw, s) for _, gw, _ in gws for s in range(1, n + 1))
    assert set(store.batches.values()) == {"stored"}
    assert len(store.readings) == len(gws) * n * pub.per_batch  # lost 0, dup 0
    assert all(acks.retained.get(gw) is not None for _, gw, _ in gws)
    assert worker.metrics.duplicates._value.get() == 0


def test_a_redelivered_batch_is_a_noop(
    worker: IngestWorker, store: FakeStore, pub: Publisher, acks: AckWatcher
) -> None:
    site, gw, pairs = gateways()[0]
    pub.send(site, gw, pairs, range(1, 11))
    assert acks.wait_for(gw, 10)
    before = dict(store.readings)
    same = pub.batch(site, gw, pairs, 5)
    pub.send(site, gw, pairs, [11])
    pub.publish(site, gw, store.raw[(gw, 5)]).wait_for_publish(10)
    pub.publish(site, gw, same).wait_for_publish(10)  # a re-send with a new sent_at: still (gw, 5)
    wait_until(lambda: worker.metrics.duplicates._value.get() >= 2, 10, "duplicates counted")
    assert acks.wait_for(gw, 11)
    assert {k: v for k, v in store.readings.items() if k in before} == before
    assert len(store.batches) == 11 and not store.dead


def test_the_watermark_is_retained_contiguous_and_never_passes_a_gap(
    worker: IngestWorker, store: FakeStore, pub: Publisher, acks: AckWatcher, broker: Any
) -> None:
    site, gw, pairs = gateways()[0]
    pub.send(site, gw, pairs, [1, 2, 4, 5])
    wait_until(lambda: len(store.batches) == 4, 10, "4 batches stored")
    assert acks.wait_for(gw, 2)
    time.sleep(0.3)  # let any wrong ack arrive: nothing may pass 2 while 3 is missing
    assert acks.marks[gw] == 2
    pub.send(site, gw, pairs, [3])
    assert acks.wait_for(gw, 5)
    assert sorted(acks.history[gw]) == acks.history[gw]  # monotonic
    late = AckWatcher(broker_url(broker), client_id="late-watcher")  # retained: a new edge session sees it
    try:
        assert late.wait_for(gw, 5, timeout_s=5) and late.retained[gw]
    finally:
        late.close()


def test_dropped_through_advances_the_watermark_and_is_recorded_as_lost(
    worker: IngestWorker, store: FakeStore, pub: Publisher, acks: AckWatcher
) -> None:
    site, gw, pairs = gateways()[1]
    pub.send(site, gw, pairs, [1, 2, 3])
    assert acks.wait_for(gw, 3)
    pub.status(site, gw, dropped_through=6, last_seq=8)
    assert acks.wait_for(gw, 6)
    assert store.dropped[gw] == 6
    pub.send(site, gw, pairs, [8, 7])
    assert acks.wait_for(gw, 8)
    assert sorted(s for g, s in store.batches if g == gw) == [1, 2, 3, 7, 8]


def test_store_outage_turns_readiness_red_bounds_the_queue_and_loses_nothing(
    broker: Any, store: FakeStore, pub: Publisher, acks: AckWatcher
) -> None:
    w = IngestWorker(
        settings_for(broker_url(broker), receive_maximum=50, batch_max_messages=20),
        store,
        REG,
        client_id="test-ingest-r7",
    )
    site, gw, pairs = gateways()[0]
    with w:
        wait_until(lambda: w.ready, 10, "ready")
        store.down = True
        pub.send(site, gw, pairs, range(1, 401))  # the broker queues what the window does not take
        wait_until(lambda: not w.ready, 10, "readiness red")
        depth = []
        t_end = time.monotonic() + 2
        while time.monotonic() < t_end:  # the outage lasts 2 s here (60 s in the fault suite)
            depth.append(w.queue_depth)
            time.sleep(0.05)
        assert max(depth) <= 50 and w.live
        store.down = False
        wait_until(lambda: w.ready, 10, "readiness green")
        # 400 batches through a window of 50 after the outage: seconds on a quiet machine; the
        # deadline is for a loaded one (failed once at 30 s beside another test worker).
        assert acks.wait_for(gw, 400, timeout_s=90), (
            f"watermark {acks.marks.get(gw)}, stored {len([k for k in store.batches if k[0] == gw])}, "
            f"queue {w.queue_depth}, ready {w.ready}")
    assert len([k for k in store.batches if k[0] == gw]) == 400
    assert len(store.readings) == 400 * pub.per_batch


def test_malformed_payloads_become_dead_letters_and_the_worker_keeps_running(
    worker: IngestWorker, store: FakeStore, pub: Publisher, acks: AckWatcher
) -> None:
    site, gw, pairs = gateways()[0]
    other_site = next(s for s, _, _ in gateways() if s != site)
    t = topics.telemetry(site, gw)
    deep = classify(t, b"[" * 5000, datetime.now(UTC), REG, TimeWindow())
    assert isinstance(deep, DeadLetter)
    deep_reason = deep.reason  # the codec's call (bad_json or schema), checked in the unit tests
    bad = {
        b"": "bad_json",
        b"{nope": "bad_json",
        b"\xff\xfe": "bad_json",
        b"[" * 5000: deep_reason,
        b'{"v":1}': "schema",
        b'{"v":1,"gateway":"%s","seq":1,"sent_at":"2026-11-28T05:00:00Z","readings":[{"sensor":"x","metric":"pm25",'
        b'"ts":"2026-11-28T05:00:00Z","value":NaN}]}' % gw.encode(): "non_finite",
    }
    for payload in bad:
        pub.client.publish(t, payload, qos=1).wait_for_publish(10)
    pub.client.publish(
        topics.telemetry(other_site, gw), pub.batch(site, gw, pairs, 2), qos=1
    ).wait_for_publish(10)
    # over 256 KiB but under the broker's max_packet_size (deploy/mosquitto): it reaches the ingest
    pub.client.publish(t, b"{" + b" " * 264_000 + b"}", qos=1).wait_for_publish(10)
    pub.send(site, gw, pairs, [3])
    wait_until(lambda: len(store.dead) == len(bad) + 2 and (gw, 3) in store.batches, 10, "dead letters")
    reasons = sorted(d.reason for d in store.dead)
    assert reasons == sorted([*bad.values(), "topic_mismatch", "oversize"])
    assert all(d.payload in bad or d.reason in {"topic_mismatch", "oversize"} for d in store.dead)
    assert worker.live and worker.ready
    # the non_finite batch of the real gateway carried seq 1: it is handled; 2 was spoofed: not
    assert acks.wait_for(gw, 1)
    time.sleep(0.2)
    assert acks.marks[gw] == 1


def test_timestamps_in_the_future_or_1970_are_dead_letters_and_late_data_is_stored(
    worker: IngestWorker, store: FakeStore, pub: Publisher, acks: AckWatcher
) -> None:
    site, gw, pairs = gateways()[0]
    sensor, metric = pairs[0]
    now = datetime.now(UTC)

    def one(seq: int, ts: datetime) -> bytes:
        return json.dumps(
            {
                "v": 1,
                "gateway": gw,
                "seq": seq,
                "sent_at": now.isoformat(),
                "readings": [{"sensor": sensor, "metric": metric, "ts": ts.isoformat(), "value": 1.0}],
            }
        ).encode()

    for seq, ts in [
        (1, now + timedelta(hours=1)),
        (2, datetime(1970, 1, 1, tzinfo=UTC)),
        (3, now - timedelta(days=20)),
        (4, now - timedelta(days=25)),
        (5, now - timedelta(days=21)),
    ]:
        pub.publish(site, gw, one(seq, ts)).wait_for_publish(10)
    assert acks.wait_for(gw, 5)
    assert sorted(d.reason for d in store.dead) == ["time_window", "time_window"]
    assert {(gw, s): o for (g, s), o in store.batches.items() if g == gw} == {
        (gw, 1): "dead_letter",
        (gw, 2): "dead_letter",
        (gw, 3): "stored",
        (gw, 4): "stored",
        (gw, 5): "stored",
    }


def test_failover_to_the_next_broker_of_the_list(
    broker: Any, store: FakeStore, pub: Publisher, acks: AckWatcher
) -> None:
    from tests.support.ports import free_port

    dead = f"mqtt://127.0.0.1:{free_port()}"
    w = IngestWorker(settings_for(f"{dead},{broker_url(broker)}"), store, REG, client_id="test-failover")
    site, gw, pairs = gateways()[0]
    with w:
        wait_until(lambda: w.ready, 15, "connected through the second URL")
        pub.send(site, gw, pairs, [1, 2])
        assert acks.wait_for(gw, 2)


def test_stop_finishes_the_transaction_acks_and_restores_watermarks(
    broker: Any, store: FakeStore, pub: Publisher, acks: AckWatcher
) -> None:
    site, gw, pairs = gateways()[0]
    s = settings_for(broker_url(broker))
    with IngestWorker(s, store, REG, client_id="test-restart") as w:
        wait_until(lambda: w.ready, 10, "ready")
        pub.send(site, gw, pairs, range(1, 51))
        assert acks.wait_for(gw, 50)
    assert store.marks[gw] == 50
    with IngestWorker(s, store, REG, client_id="test-restart") as w2:
        wait_until(lambda: w2.ready, 10, "ready again")
        assert w2.watermarks()[gw] == 50
        pub.send(site, gw, pairs, [51])
        assert acks.wait_for(gw, 51)


class SlowStore(FakeStore):
    """A FakeStore whose writes wait until released: the database busy with a transaction."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.writing = threading.Event()
        # (watermarks carried by a write, highest seq per gateway committed before it)
        self.watermark_writes: list[tuple[dict[str, int], dict[str, int]]] = []

    def write(self, batches: Sequence[ValidBatch], dead: Sequence[DeadLetter], *,
              watermarks: Mapping[str, int] | None = None) -> WriteResult:
        self.writing.set()
        assert self.release.wait(30)
        if watermarks:
            committed: dict[str, int] = {}
            for g, seq in self.batches:
                committed[g] = max(seq, committed.get(g, 0))
            self.watermark_writes.append((dict(watermarks), committed))
        return super().write(batches, dead, watermarks=watermarks)


def test_watermarks_ride_in_the_next_write_transaction(
    broker: Any, pub: Publisher, acks: AckWatcher
) -> None:
    store = SlowStore()
    store.release.set()
    site, gw, pairs = gateways()[0]
    with IngestWorker(settings_for(broker_url(broker), batch_max_messages=1), store, REG,
                      client_id="test-marks-in-write") as w:
        wait_until(lambda: w.ready, 10, "ready")
        for seq in range(1, 6):
            pub.send(site, gw, pairs, [seq])
            assert acks.wait_for(gw, seq)
    assert store.marks[gw] == 5
    # Busy, they are saved in the data's transactions (not one of their own per flush), and
    # each write carries watermarks of earlier commits only, never ahead of the data.
    assert store.watermark_writes
    for marks, committed in store.watermark_writes:
        assert marks[gw] <= committed[gw]
