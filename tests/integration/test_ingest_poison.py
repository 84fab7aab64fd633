"""Poison messages at the ingest (issue 10), in-process against a real Mosquitto and the real
stores (SQLite and TimescaleDB): no single message, retained or redelivered, stops the worker,
now or after its restart; each becomes a dead letter with safe text, once."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from contract import topics
from contract.bounds import is_safe_text
from contract.registry import load_registry
from ingest.stores import open_store
from ingest.stores.postgres import PostgresStore
from ingest.stores.sqlite import SqliteStore
from ingest.worker import IngestWorker
from tests.integration.test_ingest_worker import settings_for
from tests.support.ingest import AckWatcher, Publisher, acks, broker, broker_url, gateways, pub
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration
__all__ = ["acks", "broker", "pub"]

REG = load_registry()
Store = SqliteStore | PostgresStore


@pytest.fixture(params=["sqlite", "timescale"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ingest.db'}"
    return str(request.getfixturevalue("timescale_db"))


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = open_store(db_url)
    s.migrate()
    s.sync_registry(REG)
    yield s
    s.close()


@pytest.fixture
def start(broker: Any, store: Store) -> Iterator[Callable[[], IngestWorker]]:
    made: list[IngestWorker] = []

    def make() -> IngestWorker:
        for w in made:
            w.stop()
        w = IngestWorker(settings_for(broker_url(broker)), store, REG, client_id="poison-ingest")
        w.start()
        made.append(w)
        wait_until(lambda: w.ready, 15, "worker ready")
        return w

    yield make
    for w in made:
        w.stop()


def _status(gateway: str, **over: Any) -> bytes:
    doc: dict[str, Any] = {"v": 1, "gateway": gateway, "state": "online",
                           "ts": datetime.now(UTC).isoformat(), "last_seq": 1}
    doc.update(over)
    return json.dumps(doc).encode()


def _letters(store: Store) -> list[Any]:
    return [r.letter for r in store.dead_letter_rows(limit=1000)]


def _alive(w: IngestWorker) -> None:
    assert w.fatal is None, w.fatal
    assert w.live


POISON_STATUS = [
    {"last_seq": 18446744073709551616},
    {"dropped_through": 18446744073709551616, "dropped_batches": 1},
    {"dropped_through": 1e30},
    {"ts": "0001-01-01T00:00:00+00:01"},
    {"outbox_oldest": "0001-01-01T00:00:00+00:01"},
    {"ts": "9999-12-31T23:59:59-23:59"},
]


@pytest.mark.parametrize("over", POISON_STATUS,
                         ids=[f"{next(iter(o))}-{i}" for i, o in enumerate(POISON_STATUS)])
def test_a_retained_poison_status_is_one_dead_letter_across_restarts(
        start: Callable[[], IngestWorker], store: Store, pub: Publisher, acks: AckWatcher,
        over: dict[str, Any]) -> None:
    site, gw, pairs = gateways()[0]
    w = start()
    pub.client.publish(topics.status(site, gw), _status(gw, **over), qos=1, retain=True).wait_for_publish(10)
    pub.send(site, gw, pairs, [1, 2])
    assert acks.wait_for(gw, 2, timeout_s=20), acks.marks
    wait_until(lambda: any(d.topic == topics.status(site, gw) for d in _letters(store)), 10, "dead letter")
    _alive(w)
    w = start()  # a restart: the retained poison comes again
    pub.send(site, gw, pairs, [3])
    assert acks.wait_for(gw, 3, timeout_s=20), acks.marks
    _alive(w)
    mine = [d for d in _letters(store) if d.topic == topics.status(site, gw)]
    assert len(mine) == 1, mine
    assert mine[0].reason == "schema" and is_safe_text(mine[0].detail)
    assert acks.marks[gw] == 3  # the poison moved no watermark
    assert store.batch_outcomes(gw) == {1: "stored", 2: "stored", 3: "stored"}


def test_a_nul_in_a_sensor_id_is_a_safe_dead_letter(
        start: Callable[[], IngestWorker], store: Store, pub: Publisher, acks: AckWatcher) -> None:
    site, gw, pairs = gateways()[0]
    w = start()
    doc = json.loads(pub.batch(site, gw, pairs, 1))
    doc["readings"][0]["sensor"] = pairs[0][0] + "\u0000x"
    pub.publish(site, gw, json.dumps(doc).encode()).wait_for_publish(10)
    pub.send(site, gw, pairs, [2])
    assert acks.wait_for(gw, 2, timeout_s=20), acks.marks
    _alive(w)
    (letter,) = _letters(store)
    assert letter.seq == 1 and "\x00" not in letter.detail and "\\x00" in letter.detail
    assert b"\\u0000" in letter.payload  # the raw bytes, untouched
    w = start()
    pub.send(site, gw, pairs, [3])
    assert acks.wait_for(gw, 3, timeout_s=20)
    _alive(w)
    assert len(_letters(store)) == 1


def test_topic_mismatch_moves_no_watermark(
        start: Callable[[], IngestWorker], store: Store, pub: Publisher, acks: AckWatcher) -> None:
    (site, gw, pairs), (_, gw2, _) = gateways()[0], gateways()[1]
    w = start()
    pub.send(site, gw, pairs, [1])
    assert acks.wait_for(gw, 1)
    # gw2's status published on gw's topic, declaring a drop far ahead
    pub.client.publish(topics.status(site, gw), _status(gw2, dropped_through=100, dropped_batches=99),
                       qos=1).wait_for_publish(10)
    # gw's status published under another site
    other = "an-xa" if site != "an-xa" else "thong-nhat"
    pub.client.publish(topics.status(other, gw), _status(gw, dropped_through=100, dropped_batches=99),
                       qos=1).wait_for_publish(10)
    wait_until(lambda: sum(d.reason == "topic_mismatch" for d in _letters(store)) == 2, 10, "two letters")
    pub.send(site, gw, pairs, [2])
    assert acks.wait_for(gw, 2)
    _alive(w)
    assert store.watermarks()[gw] == 2 or w.watermarks()[gw] == 2
    assert acks.marks[gw] == 2 and gw2 not in acks.marks


class _Refusing(SqliteStore):
    """A store with a bug and strict refusals: batch 7 raises RuntimeError (a bug of ours),
    batch 9 is refused for good, and so is any dead letter of payload ``{"refuse": 1}`` that
    still names its gateway (only the minimal letter gets in)."""

    def write(self, batches: Any, dead: Any, *, watermarks: Any = None) -> Any:
        from ingest.errors import StoreError
        if any(vb.batch.seq == 7 for vb in batches):
            raise RuntimeError("a bug in the store adapter")
        if any(vb.batch.seq == 9 for vb in batches):
            raise StoreError("refused: batch 9")
        if any(d.gateway is not None and d.payload == b'{"refuse": 1}' for d in dead):
            raise StoreError("refused: a letter")
        return super().write(batches, dead, watermarks=watermarks)


def test_a_bug_or_a_refusal_costs_one_dead_letter_and_the_worker_goes_on(
        broker: Any, tmp_path: Path, pub: Publisher, acks: AckWatcher) -> None:
    store = _Refusing(tmp_path / "refusing.db")
    store.migrate()
    site, gw, pairs = gateways()[0]
    w = IngestWorker(settings_for(broker_url(broker)), store, REG, client_id="poison-refusing")
    with w:
        wait_until(lambda: w.ready, 15, "worker ready")
        pub.send(site, gw, pairs, range(1, 7))
        pub.publish(site, gw, b'{"refuse": 1}').wait_for_publish(10)
        pub.send(site, gw, pairs, range(7, 12))
        assert acks.wait_for(gw, 11, timeout_s=20), acks.marks
        _alive(w)
        letters = _letters(store)
        by_seq = {d.seq: d for d in letters}
        assert by_seq[7].reason == "schema" and "bug in the store adapter" in by_seq[7].detail
        assert by_seq[9].reason == "schema" and "refused: batch 9" in by_seq[9].detail
        (minimal,) = [d for d in letters if d.payload == b'{"refuse": 1}']
        assert minimal.gateway is None and minimal.reason == "schema"
        outcomes = store.batch_outcomes(gw)
        assert {s for s, o in outcomes.items() if o == "stored"} == {1, 2, 3, 4, 5, 6, 8, 10, 11}
        unhandled = {s.labels["stage"]: s.value for m in w.metrics.registry.collect()
                     if m.name == "smartward_ingest_unhandled_messages" for s in m.samples
                     if s.name.endswith("_total")}
        assert unhandled["commit"] >= 1 and unhandled["store_refused"] == 1
        assert unhandled["letter_minimal"] == 1 and unhandled["letter_lost"] == 0
    store.close()


def test_a_bug_after_the_commit_is_counted_and_nothing_is_acknowledged_twice(
        broker: Any, tmp_path: Path, pub: Publisher, acks: AckWatcher,
        monkeypatch: pytest.MonkeyPatch) -> None:
    store = SqliteStore(tmp_path / "after.db")
    store.migrate()
    site, gw, pairs = gateways()[0]
    w = IngestWorker(settings_for(broker_url(broker)), store, REG, client_id="poison-after")
    real = w._account
    calls = {"n": 0}

    def account(*a: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("a bug in the bookkeeping")
        real(*a)

    monkeypatch.setattr(w, "_account", account)
    with w:
        wait_until(lambda: w.ready, 15, "worker ready")
        pub.send(site, gw, pairs, [1])
        wait_until(lambda: store.batch_outcomes(gw) == {1: "stored"}, 10, "batch 1 stored")
        pub.send(site, gw, pairs, [2])
        assert acks.wait_for(gw, 2, timeout_s=20), acks.marks
        _alive(w)
        assert store.batch_outcomes(gw) == {1: "stored", 2: "stored"} and not _letters(store)
        errors = w.metrics.registry.get_sample_value("smartward_ingest_loop_errors_total",
                                                     {"where": "after_commit"})
        assert errors == 1
    store.close()
