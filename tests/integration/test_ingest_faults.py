"""The ingest as real processes against a real Mosquitto and real stores, under faults:
kill -9 mid-stream, two workers on a shared subscription with one killed (R9), the database
stopped with ``-m immediate`` (R7), SIGTERM. Every run counts batches and readings in the store.

R7 runs the outage for a few seconds here (60 s in the fault suite); the length is the
``OUTAGE_S`` below.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.ingest import AckWatcher, Publisher, WorkerProcess, broker, gateways
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration
__all__ = ["broker"]

OUTAGE_S = 3.0
FAST = {"SMARTWARD_STORE_RETRY_INITIAL_MS": "50", "SMARTWARD_STORE_RETRY_MAX_MS": "500",
        "SMARTWARD_STORE_PING_INTERVAL_S": "0.3", "SMARTWARD_STOP_GRACE_S": "2",
        "SMARTWARD_GAP_CHECK_INTERVAL_MS": "100", "SMARTWARD_LOG_LEVEL": "INFO"}


def counts(db_url: str) -> tuple[list[tuple[str, int]], int]:
    """(every (gateway, seq) row of ingest_batches, readings) straight from the contract tables."""
    q1 = "SELECT gateway, seq FROM ingest_batches"
    q2 = "SELECT count(*) FROM readings"
    if db_url.startswith("sqlite"):
        con = sqlite3.connect(db_url.split("sqlite:///", 1)[1])
        try:
            return [(g, int(s)) for g, s in con.execute(q1)], int(con.execute(q2).fetchone()[0])
        finally:
            con.close()
    import psycopg
    with psycopg.connect(db_url) as pg:
        rows = [(g, int(s)) for g, s in pg.execute(q1).fetchall()]
        row = pg.execute(q2).fetchone()
        assert row is not None
        return rows, int(row[0])


def assert_exactly_once(db_url: str, sent: dict[str, int], per_batch: int) -> None:
    rows, readings = counts(db_url)
    expected = sorted((gw, s) for gw, n in sent.items() for s in range(1, n + 1))
    assert len(rows) == len(set(rows)), "duplicate (gateway, seq) rows"
    missing = sorted(set(expected) - set(rows))
    assert not missing, f"lost {len(missing)} batches, e.g. {missing[:5]}"
    assert sorted(rows) == expected
    assert readings == len(expected) * per_batch


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ingest.db'}"


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    made: list[WorkerProcess] = []

    def make(mqtt_url: str, db_url: str, client_id: str, **kw: Any) -> WorkerProcess:
        w = WorkerProcess(tmp_path, {"SMARTWARD_MQTT_URL": mqtt_url, "SMARTWARD_DB_URL": db_url, **FAST},
                          client_id=client_id, **kw)
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


def stream(pub: Publisher, gws: list[tuple[str, str, list[tuple[str, str]]]], n: int) -> threading.Thread:
    def run() -> None:
        for seq in range(1, n + 1):
            for site, gw, pairs in gws:
                pub.publish(site, gw, pub.batch(site, gw, pairs, seq))
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_kill9_mid_stream_then_restart_loses_and_duplicates_nothing(
        broker: Any, sqlite_url: str, workers: Callable[..., WorkerProcess]) -> None:
    gws = gateways(n=3)
    n = 600
    w = workers(broker.url, sqlite_url, "fault-ingest-k9")
    w.start()
    wait_until(w.ready, 20, "worker ready")
    pub = Publisher(broker.url, client_id="fault-pub-k9")
    acks = AckWatcher(broker.url, client_id="fault-acks-k9")
    try:
        t = stream(pub, gws, n)
        assert acks.wait_for(gws[0][1], n // 4, timeout_s=30)
        w.kill9()  # committed-but-unacked and queued messages are redelivered to the next session
        t.join(30)
        w.start()
        for _, gw, _ in gws:
            assert acks.wait_for(gw, n, timeout_s=40), (gw, acks.marks.get(gw))
        assert_exactly_once(sqlite_url, {gw: n for _, gw, _ in gws}, pub.per_batch)
        assert w.terminate() == 0  # SIGTERM: clean stop
    finally:
        pub.close()
        acks.close()


def test_two_workers_on_a_shared_subscription_one_killed(
        broker: Any, postgres_db: str, workers: Callable[..., WorkerProcess]) -> None:
    gws = gateways(n=4)
    n = 500
    a = workers(broker.url, postgres_db, "fault-ingest-a", share_group="ingest")
    b = workers(broker.url, postgres_db, "fault-ingest-b", share_group="ingest")
    a.start()
    wait_until(a.ready, 20, "worker a ready")  # a migrates first: no race on CREATE
    b.start()
    wait_until(b.ready, 20, "worker b ready")
    pub = Publisher(broker.url, client_id="fault-pub-r9")
    acks = AckWatcher(broker.url, client_id="fault-acks-r9")
    try:
        t = stream(pub, gws, n)
        assert acks.wait_for(gws[0][1], n // 5, timeout_s=30)
        a.kill9()
        t.join(30)
        a.start()  # what `ingest run --workers N` does for a dead child
        for _, gw, _ in gws:
            assert acks.wait_for(gw, n, timeout_s=45), (gw, acks.marks.get(gw))
        assert_exactly_once(postgres_db, {gw: n for _, gw, _ in gws}, pub.per_batch)
    finally:
        pub.close()
        acks.close()


def test_database_down_turns_readiness_red_then_green_and_loses_nothing(
        broker: Any, make_postgres: Callable[[], Any], workers: Callable[..., WorkerProcess]) -> None:
    pg = make_postgres()
    db_url = pg.fresh_db("ingest")
    gws = gateways(n=2)
    w = workers(broker.url, db_url, "fault-ingest-r7")
    w.start()
    wait_until(w.ready, 20, "worker ready")
    pub = Publisher(broker.url, client_id="fault-pub-r7")
    acks = AckWatcher(broker.url, client_id="fault-acks-r7")
    try:
        for site, gw, pairs in gws:
            pub.send(site, gw, pairs, range(1, 101))
        assert acks.wait_for(gws[0][1], 100)
        pg.stop_immediate()
        wait_until(lambda: not w.ready(), 15, "readiness red")
        for site, gw, pairs in gws:
            pub.send(site, gw, pairs, range(101, 301))  # the broker holds what the window does not
        down = threading.Event()
        down.wait(OUTAGE_S)  # the outage itself: nothing to wait for but time
        assert not w.ready() and w.proc is not None and w.proc.poll() is None
        pg.start()
        wait_until(w.ready, 30, "readiness green")
        for _, gw, _ in gws:
            assert acks.wait_for(gw, 300, timeout_s=30), (gw, acks.marks.get(gw))
        assert_exactly_once(db_url, {gw: 300 for _, gw, _ in gws}, pub.per_batch)
    finally:
        pub.close()
        acks.close()
