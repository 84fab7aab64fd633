"""The AMQP source against a real RabbitMQ (deploy/rabbitmq, tests/servers/rabbitmq.py).

Real edge agents publish over MQTT 3.1.1 to RabbitMQ's MQTT plugin; the ingest consumes the
quorum queue over AMQP, stores into SQLite, and sends the ack watermarks back over MQTT
(retained). Every batch is stored once, every outbox drains (docs/scale-out.md).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from contract import topics
from edge.agent import Agent
from edge.clock import ScaledClock
from edge.counters import EdgeStats
from edge.drivers.synthetic import SyntheticDriver
from ingest.amqp_source import AmqpSource
from ingest.settings import IngestSettings
from ingest.stores import open_store
from ingest.worker import IngestWorker
from tests.integration.test_edge_mqtt import FLUSH, REGISTRY, T0, edge_agent
from tests.servers.rabbitmq import RabbitCluster, RabbitFactory, message_counts
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

GATEWAYS = ("ax-gw-02", "tn-gw-01", "qt-gw-02")
QUEUE = "smartward.telemetry"


def ingest_settings(cluster: RabbitCluster, **over: Any) -> IngestSettings:
    base: dict[str, Any] = {
        "mqtt_url": cluster.mqtt_url(), "ingest_source": cluster.amqp_url(QUEUE),
        "receive_maximum": 100, "batch_max_messages": 50, "batch_max_ms": 20,
        "store_retry_initial_ms": 20, "store_retry_max_ms": 200, "stop_grace_s": 1.0,
        "store_ping_interval_s": 0.2, "gap_check_interval_ms": 50, "keepalive_s": 10,
    }
    return IngestSettings(**(base | over))


@contextlib.contextmanager
def ingest(cluster: RabbitCluster, db_url: str, **over: Any) -> Iterator[IngestWorker]:
    store = open_store(db_url)
    store.migrate()
    try:
        worker = IngestWorker(ingest_settings(cluster, **over), store, REGISTRY,
                              client_id=f"amqp-ingest-{id(store)}")
        with worker:
            assert worker.source.subscribed.wait(30), "the AMQP consumer did not start"
            yield worker
    finally:
        store.close()


@contextlib.contextmanager
def edges(tmp_path: Path, url: str, end: Any, speed: float = 600) -> Iterator[dict[str, Agent]]:
    with contextlib.ExitStack() as stack:
        agents = {}
        for gw in GATEWAYS:
            driver = SyntheticDriver(REGISTRY.sensors_of(gw), start=T0, end=end)
            agents[gw] = stack.enter_context(edge_agent(tmp_path / gw, url, speed=speed, end=end,
                                                        gateway=gw, driver=driver))
        yield agents


def drained_and_acked(end: Any) -> Any:
    def check(s: EdgeStats) -> bool:
        return (s.at > end + 2 * FLUSH and s.counters.batches_created > 0
                and s.outbox.batches == 0 and s.watermark == s.outbox.last_seq)
    return check


def stored(db_path: Path) -> tuple[list[tuple[str, int]], int]:
    con = sqlite3.connect(db_path)
    try:
        rows = [(g, int(s)) for g, s in con.execute("SELECT gateway, seq FROM ingest_batches")]
        return rows, int(con.execute("SELECT count(*) FROM readings").fetchone()[0])
    finally:
        con.close()


def assert_stored_once(db_path: Path, last: dict[str, int], end: Any) -> None:
    rows, readings = stored(db_path)
    assert len(rows) == len(set(rows)), "a (gateway, seq) stored twice"
    expected = sorted((gw, s) for gw, n in last.items() for s in range(1, n + 1))
    missing = sorted(set(expected) - set(rows))
    assert not missing, f"lost {len(missing)} batches, e.g. {missing[:5]}"
    assert sorted(rows) == expected
    want = sum(len(SyntheticDriver(REGISTRY.sensors_of(gw), start=T0).poll(end)) for gw in last)
    assert readings == want


def retained_ack(url: str, site: str, gateway: str, timeout_s: float = 10) -> int | None:
    """The retained ack watermark a fresh MQTT client gets for ``gateway`` (None: none)."""
    b = url.split(",", maxsplit=1)[0]
    from contract.brokers import BrokerUrl

    broker = BrokerUrl.parse(b)
    got: list[int] = []
    arrived = threading.Event()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"ack-reader-{gateway}",
                    protocol=mqtt.MQTTv311)
    c.username_pw_set(broker.username, broker.password)

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        got.append(int(json.loads(msg.payload)["seq"]))
        arrived.set()

    c.on_message = on_message
    c.on_connect = lambda cl, *_a: cl.subscribe(topics.ack(site, gateway), qos=1)
    c.connect(broker.host, broker.port)
    c.loop_start()
    try:
        arrived.wait(timeout_s)
    finally:
        c.disconnect()
        c.loop_stop()
    return got[-1] if got else None


def test_edges_over_mqtt_ingest_over_amqp_store_every_batch_once(
        tmp_path: Path, rabbitmq: RabbitFactory) -> None:
    cluster = rabbitmq()
    node = cluster.nodes[0]
    db = tmp_path / "ingest.db"
    end = T0 + timedelta(minutes=20)
    with ingest(cluster, f"sqlite:///{db}") as worker:
        assert isinstance(worker.source, AmqpSource)
        queues = node.ctl("list_queues", "name", "type", "durable", "--no-table-headers", "-q")
        assert any(line.split() == [QUEUE, "quorum", "true"] for line in queues.splitlines()), queues
        bindings = node.ctl("list_bindings", "source_name", "destination_name", "routing_key",
                            "--no-table-headers", "-q")
        for key in ("smartward.v1.*.*.telemetry", "smartward.v1.*.*.senml", "smartward.v1.*.*.status"):
            assert any(line.split() == ["amq.topic", QUEUE, key] for line in bindings.splitlines()), key
        with edges(tmp_path, node.mqtt_url(), end) as agents:
            last = {gw: a.wait_until(drained_and_acked(end), 90).outbox.last_seq
                    for gw, a in agents.items()}
        assert worker.ready
    assert all(n >= 10 for n in last.values()), last
    assert_stored_once(db, last, end)
    # Nothing left behind (the queue's counters are refreshed every few seconds).
    wait_until(lambda: message_counts(node, QUEUE) == (0, 0), 30, "the quorum queue empty")
    for gw, n in last.items():  # the watermark stays on the broker, retained
        site = REGISTRY.site_of(gw)
        assert site is not None
        assert retained_ack(node.mqtt_url(), site, gw) == n


def test_worker_killed_mid_stream_the_next_one_stores_the_rest_once(
        tmp_path: Path, rabbitmq: RabbitFactory) -> None:
    """Unacknowledged deliveries go back to the quorum queue when the consumer's connection
    ends; a second worker (another process in production) takes them: duplicates absorbed."""
    cluster = rabbitmq()
    node = cluster.nodes[0]
    db = tmp_path / "ingest.db"
    end = T0 + timedelta(minutes=20)
    with edges(tmp_path, node.mqtt_url(), end, speed=300) as agents:
        first = agents[GATEWAYS[0]]
        with ingest(cluster, f"sqlite:///{db}") as worker:
            first.wait_until(lambda s: s.watermark >= 10, 60)
            # The consumer's connection drops without a goodbye (a crash): its unacked
            # deliveries are requeued.
            source = worker.source
            assert isinstance(source, AmqpSource)
        with ingest(cluster, f"sqlite:///{db}"):
            last = {gw: a.wait_until(drained_and_acked(end), 120).outbox.last_seq
                    for gw, a in agents.items()}
    assert_stored_once(db, last, end)


def _max_stored_seqs(db_path: Path) -> dict[str, int]:
    con = sqlite3.connect(db_path, timeout=5)
    try:
        rows = con.execute("SELECT gateway, max(seq) FROM ingest_batches GROUP BY gateway")
        return {g: int(s) for g, s in rows}
    finally:
        con.close()


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.timeout(420)
def test_cluster_node_holding_the_queue_leader_killed_while_edges_publish(
        tmp_path: Path, rabbitmq: RabbitFactory) -> None:
    """H1: kill -9 of the node that leads the quorum queue (and serves some edges and maybe the
    ingest) while three edges publish → lost 0, duplicates absorbed, commits resume within 60 s."""
    cluster = rabbitmq(nodes=3)
    db = tmp_path / "ingest.db"
    end = T0 + timedelta(minutes=90)  # 45 s of publishing at ×120
    with ingest(cluster, f"sqlite:///{db}") as worker:
        members = cluster.nodes[0].ctl("list_queues", "name", "members", "--no-table-headers", "-q")
        assert all(n.node in members for n in cluster.nodes), members  # a member on every node
        leader = cluster.queue_leader(QUEUE)
        # Each edge starts on a different node and fails over along the list.
        urls = [n.mqtt_url() for n in cluster.nodes]
        with contextlib.ExitStack() as stack:
            agents: dict[str, Agent] = {}
            for i, gw in enumerate(GATEWAYS):
                driver = SyntheticDriver(REGISTRY.sensors_of(gw), start=T0, end=end)
                url = ",".join(urls[i:] + urls[:i])
                agents[gw] = stack.enter_context(edge_agent(tmp_path / gw, url, speed=120, end=end,
                                                            gateway=gw, driver=driver))
            for a in agents.values():
                a.wait_until(lambda s: s.watermark >= 3, 60)
            sealed = {gw: a.wait_until(lambda s: True, 1).outbox.last_seq for gw, a in agents.items()}
            t_kill = time.monotonic()
            leader.kill9()
            # Commits resume: a batch sealed after the kill is stored.
            wait_until(lambda: any(_max_stored_seqs(db).get(gw, 0) > n for gw, n in sealed.items()),
                       60, "a batch sealed after the kill committed")
            resumed_s = time.monotonic() - t_kill
            last = {gw: a.wait_until(drained_and_acked(end), 180).outbox.last_seq
                    for gw, a in agents.items()}
            drained_s = time.monotonic() - t_kill
        assert worker.ready
    new_leader = cluster.queue_leader(QUEUE)
    assert new_leader is not leader
    print(f"\nH1 RabbitMQ: leader {leader.node} killed; commits resumed after {resumed_s:.1f} s; "
          f"every outbox drained and acked {drained_s:.1f} s after the kill; new leader {new_leader.node}")
    assert resumed_s < 60
    assert_stored_once(db, last, end)


@pytest.mark.slow
def test_an_edge_reconnecting_to_a_node_without_its_retained_ack_still_drains(
        tmp_path: Path, rabbitmq: RabbitFactory) -> None:
    """RabbitMQ 3.10 keeps a retained message on the node it was published to. The ingest
    publishes watermarks through node 0; the edge comes back on node 1, which has none, with
    batches in its outbox that are all committed and nothing new to send: its re-sends are
    duplicates, and the ingest publishes the watermark again for them (take_resent)."""
    cluster = rabbitmq(nodes=2)
    n0, n1 = cluster.nodes
    db = tmp_path / "ingest.db"
    gw = GATEWAYS[0]
    end = T0 + timedelta(minutes=10)
    driver = SyntheticDriver(REGISTRY.sensors_of(gw), start=T0, end=end)
    # 1. No ingest yet: everything stays in the outbox (and in the quorum queue).
    with ingest(cluster, f"sqlite:///{db}"):
        pass  # declares the queue and its bindings, then stops
    with edge_agent(tmp_path / gw, n1.mqtt_url(), speed=300, end=end, gateway=gw, driver=driver) as a:
        sent = a.wait_until(lambda s: s.at > end + 2 * FLUSH and s.counters.batches_created > 0
                            and s.counters.batches_published >= s.outbox.last_seq, 60)
    n = sent.outbox.last_seq
    assert sent.watermark == 0 and sent.outbox.batches == n
    # 2. The ingest commits them all and publishes the retained watermark through node 0.
    with ingest(cluster, f"sqlite:///{db}", mqtt_url=n0.mqtt_url()):
        wait_until(lambda: _max_stored_seqs(db).get(gw, 0) == n, 60, "all committed")
        assert retained_ack(n0.mqtt_url(), REGISTRY.site_of(gw) or "", gw) == n
        # 3. The edge returns on node 1 with nothing new to send (its clock is past the end).
        idle = SyntheticDriver(REGISTRY.sensors_of(gw), start=end, end=end)
        later = ScaledClock(speed=300, start=end + timedelta(minutes=5))
        with edge_agent(tmp_path / gw, n1.mqtt_url(), gateway=gw, driver=idle, clock=later) as a:
            back = a.wait_until(lambda s: s.watermark == n and s.outbox.batches == 0, 60)
    assert back.outbox.last_seq == n
    assert_stored_once(db, {gw: n}, end)


def test_two_ingest_processes_on_the_queue_one_killed_lose_and_duplicate_nothing(
        tmp_path: Path, rabbitmq: RabbitFactory, postgres_db: str) -> None:
    """``smartward ingest run`` with SMARTWARD_INGEST_SOURCE, twice: competing consumers on the
    quorum queue; ``kill -9`` of one mid-stream (its unacked deliveries go to the other)."""
    from tests.integration.test_ingest_faults import FAST, counts
    from tests.support.ingest import WorkerProcess

    cluster = rabbitmq()
    node = cluster.nodes[0]
    env = {"SMARTWARD_INGEST_SOURCE": cluster.amqp_url(QUEUE), "SMARTWARD_MQTT_URL": cluster.mqtt_url(),
           "SMARTWARD_DB_URL": postgres_db, "SMARTWARD_RECEIVE_MAXIMUM": "50", **FAST}
    a = WorkerProcess(tmp_path, env, client_id="amqp-ingest-a")
    b = WorkerProcess(tmp_path, env, client_id="amqp-ingest-b")
    end = T0 + timedelta(minutes=40)
    try:
        a.start()
        wait_until(a.ready, 30, "worker a ready")  # a migrates first: no race on CREATE
        b.start()
        wait_until(b.ready, 30, "worker b ready")
        with edges(tmp_path, node.mqtt_url(), end, speed=200) as agents:
            agents[GATEWAYS[0]].wait_until(lambda s: s.watermark >= 20, 60)
            a.kill9()
            last = {gw: ag.wait_until(drained_and_acked(end), 120).outbox.last_seq
                    for gw, ag in agents.items()}
        assert b.terminate() == 0
    finally:
        a.close()
        b.close()
    rows, readings = counts(postgres_db)
    assert len(rows) == len(set(rows)), "a (gateway, seq) stored twice"
    assert sorted(rows) == sorted((gw, s) for gw, n in last.items() for s in range(1, n + 1))
    assert readings == sum(len(SyntheticDriver(REGISTRY.sensors_of(gw), start=T0).poll(end)) for gw in last)
