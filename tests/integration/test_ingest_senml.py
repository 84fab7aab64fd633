"""SenML (RFC 8428) in: a real Mosquitto into the real ingest worker, on SQLite and on
TimescaleDB. Stored like telemetry, once (a redelivery is a no-op by (sensor, metric, time)),
never moving an ack watermark; every bad input a dead letter with its reason code; and the
broker's generated ACL lets a gateway publish SenML under its own topic only."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from contract import topics
from contract.registry import load_registry
from ingest.rollup import bucket_start
from ingest.stores.postgres import PostgresStore
from ingest.stores.sqlite import SqliteStore
from ingest.worker import IngestWorker
from ops_center.mqtt_cli import main as mqtt_main
from ops_center.security.mqtt_credentials import read_credentials
from tests.integration.test_ingest_worker import settings_for
from tests.integration.test_security_mqtt import Client
from tests.support.ingest import AckWatcher, Publisher, acks, broker, broker_url, pub
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration
__all__ = ["acks", "broker", "pub"]

REG = load_registry()
SITE, GW = "thong-nhat", "tn-gw-01"
TOPIC = topics.senml(SITE, GW)


@pytest.fixture(params=["sqlite", "timescaledb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    s: Any
    if request.param == "sqlite":
        s = SqliteStore(tmp_path / "senml.db")
    else:
        s = PostgresStore(request.getfixturevalue("timescale_db"), timescaledb=True)
    s.migrate()
    yield s
    s.close()


@pytest.fixture
def worker(broker: Any, store: Any) -> Iterator[IngestWorker]:
    w = IngestWorker(settings_for(broker_url(broker)), store, REG, client_id="test-ingest-senml")
    with w:
        wait_until(lambda: w.ready, 15, "worker ready")
        yield w


def received(w: IngestWorker) -> float:
    return float(w.metrics.received.labels("telemetry")._value.get())


def publish(pub: Publisher, payload: bytes, topic: str = TOPIC) -> None:
    pub.client.publish(topic, payload, qos=1).wait_for_publish(10)


def pack(t0: float, *records: dict[str, Any], bn: str = "urn:dev:sw:tn-aq-01:") -> bytes:
    return json.dumps([{"bn": bn, "bt": t0, "bu": "ug/m3", **records[0]}, *records[1:]]).encode()


def test_senml_is_stored_once_and_never_moves_a_watermark(
    worker: IngestWorker, store: Any, pub: Publisher, acks: AckWatcher
) -> None:
    pairs = [("tn-aq-01", "pm25"), ("tn-aq-01", "pm10")]
    pub.send(SITE, GW, pairs, range(1, 4))  # telemetry seqs 1..3: the watermark is 3
    assert acks.wait_for(GW, 3)
    t0 = round(time.time()) - 600.0
    message = pack(t0, {"n": "pm25", "v": 41.5}, {"n": "pm10", "v": 70.25, "t": 0},
                   {"n": "pm25", "v": 42.0, "t": 60},
                   {"bn": "urn:dev:sw:tn-noise-01:", "n": "noise_laeq", "u": "dBA", "v": 61},
                   {"bn": "urn:dev:sw:tn-bin-01:", "n": "bin_fill_pct", "u": "%", "v": 250, "t": 5})
    relative = json.dumps([{"bn": "urn:dev:sw:tn-aq-01:", "n": "humidity_pct", "u": "%RH", "v": 70,
                            "t": -30}]).encode()
    before = received(worker)
    publish(pub, message)
    publish(pub, message)  # a redelivery (or a device re-sending): stored once
    publish(pub, relative)
    wait_until(lambda: received(worker) >= before + 3, 15, "three SenML messages received")
    start, end = datetime.fromtimestamp(t0 - 1, UTC), datetime.fromtimestamp(t0 + 120, UTC)
    wait_until(lambda: len(store.query_readings("tn-aq-01", "pm25", start, end)) == 2, 15, "readings")
    pm25 = store.query_readings("tn-aq-01", "pm25", start, end)
    assert [(r.time, r.value, r.quality, r.gateway, r.site) for r in pm25] == [
        (datetime.fromtimestamp(t0, UTC), 41.5, "good", GW, SITE),
        (datetime.fromtimestamp(t0 + 60, UTC), 42.0, "good", GW, SITE)]
    assert [r.value for r in store.query_readings("tn-aq-01", "pm10", start, end)] == [70.25]
    assert [r.value for r in store.query_readings("tn-noise-01", "noise_laeq", start, end)] == [61.0]
    # Outside the catalog's physical bounds (0..100 %): stored as the instrument said, quality bad.
    assert [(r.value, r.quality) for r in store.query_readings("tn-bin-01", "bin_fill_pct", start, end)] == [
        (250.0, "bad")]
    now = datetime.now(UTC)
    hum = store.query_readings("tn-aq-01", "humidity_pct", now - timedelta(minutes=5), now)
    assert len(hum) == 1 and hum[0].value == 70.0  # relative time: 30 s before receipt
    assert not store.dead_letter_rows()
    # In the stored stream (migration 0006): the platform's rollups take them like telemetry.
    while store.refresh_rollups():
        pass
    minutes = store.query_rollup("1m", "tn-aq-01", "pm25", start - timedelta(minutes=1), end)
    assert [(b.bucket, b.avg, b.count) for b in minutes] == [
        (bucket_start(datetime.fromtimestamp(t0 + k, UTC), 60), v, 1) for k, v in ((0, 41.5), (60, 42.0))]
    (hour,) = store.query_rollup("1h", "tn-noise-01", "noise_laeq", start - timedelta(hours=1), end)
    assert (hour.avg, hour.count) == (61.0, 1)
    # Redelivered later, once its readings are in the store (another flush, another transaction).
    stored = worker.metrics.stored_batches._value.get()
    publish(pub, message)
    wait_until(lambda: worker.metrics.stored_batches._value.get() > stored, 15, "the redelivery handled")
    assert len(store.query_readings("tn-aq-01", "pm25", start, end)) == 2 and not store.dead_letter_rows()
    # No watermark moved and no batch was claimed: seqs 1..3 are still all the gateway has.
    assert store.batch_outcomes(GW) == {1: "stored", 2: "stored", 3: "stored"}
    assert worker.watermarks()[GW] == 3 and store.watermarks().get(GW, 3) == 3
    pub.send(SITE, GW, pairs, [4])
    assert acks.wait_for(GW, 4)
    assert set(acks.history[GW]) <= {3, 4}


def bad_inputs(now: float) -> list[tuple[str, bytes, str]]:
    """(topic, payload, reason) for every way a SenML message can be refused."""
    ok = {"bn": "urn:dev:sw:tn-aq-01:", "bt": now, "n": "pm25", "v": 12}

    def one(**over: Any) -> bytes:
        return json.dumps([{**ok, **over}]).encode()

    return [
        (TOPIC, b"", "bad_json"),
        (TOPIC, b"[{nope", "bad_json"),
        (TOPIC, b"\xff\xfe[]", "bad_json"),
        (TOPIC, b"[" * 5000 + b"]" * 5000, "bad_json"),
        (TOPIC, b'{"n": "x"}', "schema"),
        (TOPIC, b"[]", "schema"),
        (TOPIC, one(n="pm25", bn="tn-aq-01/"), "schema"),  # not our naming
        (TOPIC, one(v="12"), "schema"),
        (TOPIC, one(vs="high"), "schema"),
        (TOPIC, one(v=2**64), "schema"),
        (TOPIC, one(bver=11), "schema"),
        (TOPIC, one(x_=1), "schema"),  # must-understand label
        (TOPIC, one(u="ppm"), "schema"),  # a wrong unit
        (TOPIC, json.dumps([{**ok, "bu": "Cel"}]).encode(), "schema"),  # a wrong base unit
        (TOPIC, one(n="lamp_power_w"), "unknown_sensor"),  # not a metric of tn-aq-01
        (TOPIC, one(bn="urn:dev:sw:qt-aq-01:"), "unknown_sensor"),  # another gateway's sensor
        (topics.senml("quang-trung", GW), one(), "topic_mismatch"),  # under another site
        (topics.senml(SITE, "zz-gw-99"), one(), "unknown_sensor"),  # gateway not registered
        (TOPIC, one(t=-40 * 86400), "time_window"),
        (TOPIC, one(bt=4102444800), "time_window"),  # 2100
        (TOPIC, one(bt=1e300), "time_window"),
        (TOPIC, b'[{"bn": "urn:dev:sw:tn-aq-01:", "n": "pm25", "v": NaN}]', "non_finite"),
        (TOPIC, b'[{"bn": "urn:dev:sw:tn-aq-01:", "n": "pm25", "v": 1e999}]', "non_finite"),
        # over 256 KiB but under the broker's max_packet_size (deploy/mosquitto)
        (TOPIC, b"[" + b" " * 264_000 + b"]", "oversize"),
    ]


def test_every_bad_senml_message_is_a_dead_letter_and_moves_no_watermark(
    worker: IngestWorker, store: Any, pub: Publisher, acks: AckWatcher
) -> None:
    pub.send(SITE, GW, [("tn-aq-01", "pm25")], [1])
    assert acks.wait_for(GW, 1)
    bad = bad_inputs(time.time())
    for topic, payload, _ in bad:
        publish(pub, payload, topic)
    # A conflict: the same (sensor, metric, time) again with another value.
    t0 = round(time.time()) - 300.0
    publish(pub, pack(t0, {"n": "pm25", "v": 10}))
    publish(pub, pack(t0, {"n": "pm25", "v": 11}))
    wait_until(lambda: len(store.dead_letter_rows(limit=1000)) >= len(bad) + 1, 20, "dead letters")
    letters = [d.letter for d in store.dead_letter_rows(limit=1000)]
    got = sorted((d.topic, d.payload, d.reason) for d in letters)
    assert got == sorted([*bad, (TOPIC, pack(t0, {"n": "pm25", "v": 11}), "conflict")])
    assert all(d.seq is None and d.detail.startswith(("senml: ", "1 reading(s) conflict")) for d in letters)
    start, end = datetime.fromtimestamp(t0 - 1, UTC), datetime.fromtimestamp(t0 + 1, UTC)
    assert [r.value for r in store.query_readings("tn-aq-01", "pm25", start, end)] == [10.0]
    assert worker.live and worker.ready
    assert store.batch_outcomes(GW) == {1: "stored"} and worker.watermarks()[GW] == 1
    assert set(acks.history[GW]) == {1}


def test_a_gateway_may_publish_senml_only_under_its_own_topic(mosquitto: Any, tmp_path: Path) -> None:
    creds = tmp_path / "mqtt"
    assert mqtt_main(["credentials", "--out", str(creds)]) == 0
    server = mosquitto(credentials=creds)
    pw = read_credentials(creds / "credentials.txt")
    ingest = Client(server.port, "ingest", pw["ingest"], "ingest")
    assert ingest.accepted
    ingest.subscribe(topics.subscription("senml", share_group="ingest"))
    gw = Client(server.port, GW, pw[GW], GW)
    assert gw.accepted
    gw.publish(topics.senml("quang-trung", "qt-gw-01"), b"forged")
    gw.publish(topics.senml(SITE, "tn-gw-02"), b"forged-same-site")
    gw.publish(TOPIC, b"genuine")
    wait_until(lambda: bool(ingest.messages), 10, "the genuine SenML message")
    # The broker handles one client's packets in order: anything let through came before.
    assert ingest.messages == [(TOPIC, b"genuine")]
    for c in (ingest, gw):
        c.close()
