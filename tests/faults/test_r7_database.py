"""R7 at full length: TimescaleDB stopped with ``pg_ctl stop -m immediate`` for 60 s, then the
``readings`` table locked for 30 s, while gateways keep publishing.

Pass when: lost 0 and dup 0 (counted by ``(gateway, seq)`` and readings in the store),
readiness red during each fault and green after it, and the worker's memory bounded (its queue
never above the MQTT Receive Maximum, its resident memory growing by less than
``RSS_GROWTH_MAX_KIB``). ``SMARTWARD_R7_OUTAGE_S`` / ``SMARTWARD_R7_LOCK_S`` shorten the two
phases for a quick local run; CI runs the lengths of docs/reliability.md.
"""

from __future__ import annotations

import os
import re
import threading
import urllib.request
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from tests.integration.test_ingest_faults import assert_exactly_once, workers
from tests.support.ingest import AckWatcher, Publisher, broker, gateways
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]
__all__ = ["broker", "workers"]

OUTAGE_S = float(os.environ.get("SMARTWARD_R7_OUTAGE_S", "60"))
LOCK_S = float(os.environ.get("SMARTWARD_R7_LOCK_S", "30"))
RECEIVE_MAXIMUM = 200
RSS_GROWTH_MAX_KIB = 64 * 1024
BATCHES_PER_PHASE = 150  # per gateway, published while the fault lasts


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        m = re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M)
    assert m is not None
    return int(m.group(1))


def queue_depth(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
        text = r.read().decode()
    m = re.search(r"^smartward_ingest_queue_depth (\S+)$", text, re.M)
    assert m is not None, "queue depth gauge missing"
    return float(m.group(1))


class Sampler:
    """Samples the worker's RSS and queue depth every 0.2 s while a fault lasts."""

    def __init__(self, pid: int, metrics_port: int) -> None:
        self.pid, self.port = pid, metrics_port
        self.max_rss_kib = 0
        self.max_queue = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self.max_rss_kib = max(self.max_rss_kib, rss_kib(self.pid))
                self.max_queue = max(self.max_queue, queue_depth(self.port))
            except OSError:
                continue  # the endpoint busy for a moment, or the worker gone: the test says which

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


def test_database_down_60s_then_locked_30s_loses_nothing_and_stays_bounded(
    broker: Any, make_timescale: Callable[[], Any], workers: Callable[..., Any]
) -> None:
    pg = make_timescale()
    db_url = pg.fresh_db("r7")
    gws = gateways(n=3)
    w = workers(broker.url, db_url, "r7-ingest")
    w.env["SMARTWARD_RECEIVE_MAXIMUM"] = str(RECEIVE_MAXIMUM)
    w.start()
    wait_until(w.ready, 60, "worker ready")
    pub = Publisher(broker.url, client_id="r7-pub")
    acks = AckWatcher(broker.url, client_id="r7-acks")
    sent = 0
    samplers: list[Sampler] = []
    try:
        sent += 50
        for site, gw, pairs in gws:
            pub.send(site, gw, pairs, range(1, sent + 1))
        for _, gw, _ in gws:
            assert acks.wait_for(gw, sent, timeout_s=30)
        assert w.proc is not None
        baseline_kib = rss_kib(w.proc.pid)

        # Phase 1: the database is gone for OUTAGE_S.
        pg.stop_immediate()
        wait_until(lambda: not w.ready(), 15, "readiness red while the database is down")
        sampler = Sampler(w.proc.pid, w.metrics_port)
        samplers.append(sampler)
        first = sent + 1
        sent += BATCHES_PER_PHASE
        for site, gw, pairs in gws:
            pub.send(site, gw, pairs, range(first, sent + 1))
        threading.Event().wait(OUTAGE_S)  # the outage itself: nothing to wait for but time
        assert not w.ready() and w.proc.poll() is None
        pg.start()
        wait_until(w.ready, 60, "readiness green after the database is back")
        for _, gw, _ in gws:
            assert acks.wait_for(gw, sent, timeout_s=60), (gw, acks.marks.get(gw))
        sampler.close()
        assert sampler.max_queue <= RECEIVE_MAXIMUM
        outage_growth = sampler.max_rss_kib - baseline_kib

        # Phase 2: the table is locked for LOCK_S (a long migration, a stuck VACUUM FULL).
        sampler = Sampler(w.proc.pid, w.metrics_port)
        samplers.append(sampler)
        with psycopg.connect(db_url, autocommit=False) as locker:
            locker.execute("LOCK TABLE readings IN ACCESS EXCLUSIVE MODE")
            first = sent + 1
            sent += BATCHES_PER_PHASE
            for site, gw, pairs in gws:
                pub.send(site, gw, pairs, range(first, sent + 1))
            wait_until(lambda: not w.ready(), LOCK_S, "readiness red while the table is locked")
            threading.Event().wait(max(0.0, LOCK_S - 1))  # hold the lock for the phase's length
            assert not w.ready() and w.proc.poll() is None
            locker.rollback()
        wait_until(w.ready, 60, "readiness green after the lock")
        for _, gw, _ in gws:
            assert acks.wait_for(gw, sent, timeout_s=60), (gw, acks.marks.get(gw))
        sampler.close()
        assert sampler.max_queue <= RECEIVE_MAXIMUM
        lock_growth = sampler.max_rss_kib - baseline_kib

        assert_exactly_once(db_url, {gw: sent for _, gw, _ in gws}, pub.per_batch)
        assert outage_growth < RSS_GROWTH_MAX_KIB, f"RSS grew {outage_growth} KiB during the outage"
        assert lock_growth < RSS_GROWTH_MAX_KIB, f"RSS grew {lock_growth} KiB during the lock"
    finally:
        for sampler in samplers:
            sampler.close()
        pub.close()
        acks.close()
