"""The command link's persistent session, through a real Mosquitto (the shipped configuration
with the generated accounts): a ``cmd/result`` the edge publishes while no API process is
connected waits in the broker and is recorded, once, when the API comes back; past the
session expiry (``SMARTWARD_COMMANDS_SESSION_EXPIRY_S``) it is gone and the command shows
``expired``. A result that arrives while the database is down stays unacknowledged and is
recorded, once, when the database is back, also when the API stops meanwhile (the broker
redelivers it to the next run). And the client factory both MQTT links of the ops center share
(``mqttlink/link.py``) fails over from a dead broker to the next URL."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion

from contract import topics
from contract.codec import decode_command_result, encode
from contract.models import CommandResult
from ops_center.adapters.factory import open_command_store
from ops_center.adapters.postgres import PostgresOpsRepository
from ops_center.adapters.repository import OpsRepository
from ops_center.adapters.sqlite import SqliteOpsRepository
from ops_center.api.app import create_app
from ops_center.commands.desk import CommandDesk
from ops_center.commands.link import CommandLink
from ops_center.feed import Feed, FeedEvent
from ops_center.security.mqtt_credentials import generate, read_credentials
from ops_center.service.mqtt import OpsMqttLink
from tests.integration.test_api_commands import GW, REG, SET_LAMP, V1, simulated_gateway
from tests.servers.mosquitto import MosquittoFactory, MosquittoServer
from tests.servers.postgres import PostgresServer
from tests.servers.timescale import TimescaleServer
from tests.support.api import (
    FAST_PASSWORDS,
    add_users,
    auth,
    login,
    migrate_ingest_pg,
    migrate_ingest_sqlite,
    pg_rows,
    seed,
    settings,
    sqlite_rows,
)
from tests.support.ports import free_port
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

SITE = "thong-nhat"


def secured_broker(mosquitto: MosquittoFactory, tmp_path: Path,
                   **overrides: str) -> tuple[MosquittoServer, dict[str, str]]:
    """The shipped configuration with the generated password file and ACL; the accounts."""
    creds = tmp_path / "mqtt"
    generate(REG, creds)
    return mosquitto(credentials=creds, overrides=overrides), read_credentials(creds / "credentials.txt")


@pytest.fixture
def secured(mosquitto: MosquittoFactory, tmp_path: Path) -> tuple[MosquittoServer, dict[str, str]]:
    return secured_broker(mosquitto, tmp_path)


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[SqliteOpsRepository]:
    """One store that outlives the API processes of a test."""
    path = tmp_path / "api.db"
    migrate_ingest_sqlite(path)
    r = SqliteOpsRepository(path)
    try:
        r.migrate()
        seed(r, sqlite_rows(path))
        add_users(r)
        yield r
    finally:
        r.close()


class Events:
    """The ``command`` events of one API process's live stream."""

    def __init__(self, feed: Feed) -> None:
        self.items: list[FeedEvent] = []
        self._cond = threading.Condition()
        feed.listen(("command",), self._on_event)

    def _on_event(self, event: FeedEvent) -> None:
        with self._cond:
            self.items.append(event)
            self._cond.notify_all()

    def of(self, ident: str) -> list[dict[str, Any]]:
        with self._cond:
            return [dict(e.data) for e in self.items if e.data["id"] == ident]

    def wait(self, ident: str, timeout_s: float) -> list[dict[str, Any]]:
        with self._cond:
            assert self._cond.wait_for(lambda: bool(self.of(ident)), timeout_s), \
                f"no command event for {ident} within {timeout_s} s: {self.items}"
            return self.of(ident)

    def answers(self, ident: str) -> list[dict[str, Any]]:
        """The events of the edge's answers (not the ``pending`` one of sending)."""
        return [e for e in self.of(ident) if e["state"] != "pending"]

    def wait_answer(self, ident: str, timeout_s: float) -> list[dict[str, Any]]:
        with self._cond:
            assert self._cond.wait_for(lambda: bool(self.answers(ident)), timeout_s), \
                f"no answer event for {ident} within {timeout_s} s: {self.items}"
            return self.answers(ident)


@contextmanager
def api(repo: OpsRepository, url: str, feed: Feed,
        **over: Any) -> Iterator[tuple[CommandDesk, TestClient]]:
    """One API process: its own feed and command link, on the shared store; leaving the block
    stops it (the link disconnects, its session stays on the broker)."""
    app = create_app(settings(commands_mqtt_url=url, **over), repo, feed, registry=REG,
                     passwords=FAST_PASSWORDS)
    with TestClient(app) as client:
        desk: CommandDesk = app.state.commands
        assert desk.link is not None and desk.link.subscribed.wait(10), "the results subscription was refused"
        yield desk, client
    assert not desk.link.connected


class Client:
    """A plain MQTT 5 client on one of the generated accounts (the broker names it after the
    account: ``use_username_as_clientid``)."""

    def __init__(self, server: MosquittoServer, user: str, password: str) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=user, protocol=mqtt.MQTTv5)
        self.client.username_pw_set(user, password)
        self.payloads: list[bytes] = []
        self._cond = threading.Condition()
        subscribed = threading.Event()
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_a: subscribed.set()
        self.client.connect(server.host, server.port)
        self.client.loop_start()
        self._subscribed = subscribed

    def subscribe(self, topic: str) -> None:
        self._subscribed.clear()
        self.client.subscribe(topic, qos=1)
        assert self._subscribed.wait(5)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.payloads.append(bytes(msg.payload))
            self._cond.notify_all()

    def wait(self, n: int, timeout_s: float, what: str) -> list[bytes]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.payloads) >= n, timeout_s), (what, self.payloads)
            return list(self.payloads)

    def publish(self, topic: str, payload: bytes) -> None:
        """QoS 1, back when the broker has PUBACKed it (so it is routed, queued included)."""
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_result_published_while_the_api_is_down_is_recorded_once_when_it_comes_back(
    secured: tuple[MosquittoServer, dict[str, str]], repo: SqliteOpsRepository, tmp_path: Path, protocol: str
) -> None:
    server, accounts = secured
    query = "" if protocol == "5" else "?protocol=3.1.1"
    url = f"mqtt://ops-api:{accounts['ops-api']}@127.0.0.1:{server.port}{query}"
    edge_url = f"mqtt://{GW}:{accounts[GW]}@127.0.0.1:{server.port}"
    # Sees every result of the gateway as the broker routes it (the ops service's account).
    watch = Client(server, "ops", accounts["ops"])
    try:
        watch.subscribe(topics.cmd_result(SITE, GW))
        # The edge has a session on the broker (its cmd subscription) but is away.
        with simulated_gateway(tmp_path, edge_url):
            pass
        with api(repo, url, Feed()) as (_desk, client):
            staff = auth(login(client, "tn-staff"))
            r = client.post(V1, json={**SET_LAMP, "ttl_s": 10}, headers=staff)
            assert r.status_code == 202, r.text
            ident: str = r.json()["id"]
        # The API is down. The edge comes back, applies the queued command and answers.
        with simulated_gateway(tmp_path, edge_url) as agent:
            agent.wait_until(lambda s: s.counters.commands_applied == 1, 10)
            [answer] = watch.wait(1, 10, "the edge's answer reached the broker")
        # The same answer once more, as a QoS 1 redelivery would bring it.
        edge = Client(server, GW, accounts[GW])
        try:
            edge.publish(topics.cmd_result(SITE, GW), answer)
        finally:
            edge.close()
        watch.wait(2, 10, "the copy reached the broker")
    finally:
        watch.close()
    result = decode_command_result(answer)
    assert (result.id, result.ok, result.detail) == (ident, True, "applied")
    # Without the result, the command would show expired by now (its TTL is 10 s).
    later = datetime.now(UTC) + timedelta(days=1)
    store = open_command_store(repo)
    seen = store.get(ident, later)
    assert seen is not None and seen.state == "expired"

    feed = Feed()
    events = Events(feed)
    with api(repo, url, feed) as (desk, client):
        event = events.wait(ident, 10)[0]
        assert desk.link is not None
        wait_until(lambda: desk.link is not None and desk.link.results == 2, 10, "both copies delivered")
        staff = auth(login(client, "tn-staff"))
        client.app.state.smartward.clock = lambda: later  # type: ignore[attr-defined]
        got = client.get(f"{V1}/{ident}", headers=staff)
        assert got.status_code == 200, got.text
        shown = got.json()
        assert desk.link.bad_results == 0
    assert (event["state"], event["detail"], event["gateway"]) == ("applied", "applied", GW)
    assert events.of(ident) == [event], "the copy must change nothing and tell no screen"
    assert (shown["state"], shown["detail"]) == ("applied", "applied")
    stored = store.get(ident, later)
    assert stored is not None and (stored.state, stored.result_at) == ("applied", result.ts)


def test_past_the_session_expiry_a_result_is_lost_and_the_command_shows_expired(
    mosquitto: MosquittoFactory, repo: SqliteOpsRepository, tmp_path: Path
) -> None:
    # A second log, to a file: Mosquitto flushes it per line (its stdout is block-buffered).
    broker_log = tmp_path / "broker.log"
    server, accounts = secured_broker(mosquitto, tmp_path, log_dest=f"file {broker_log}")
    url = f"mqtt://ops-api:{accounts['ops-api']}@127.0.0.1:{server.port}"
    edge = Client(server, GW, accounts[GW])
    try:
        edge.subscribe(topics.cmd(SITE, GW))
        with api(repo, url, Feed(), commands_session_expiry_s=1) as (_desk, client):
            staff = auth(login(client, "tn-staff"))
            r = client.post(V1, json={**SET_LAMP, "ttl_s": 10}, headers=staff)
            assert r.status_code == 202, r.text
            ident: str = r.json()["id"]
            edge.wait(1, 10, "the command reached the edge")
        # Mosquitto drops the session one second after the link left (its own log says when).
        wait_until(lambda: "Expiring client ops-api due to timeout" in broker_log.read_text(errors="replace"),
                   10, "the broker expired the command link's session")
        ts = datetime.now(UTC)
        lost = CommandResult(v=1, id=ident, ok=True, detail="applied", ts=ts)
        edge.publish(topics.cmd_result(SITE, GW), encode(lost))
        feed = Feed()
        events = Events(feed)
        with api(repo, url, feed) as (desk, _client):
            # A result published after the link is back arrives; the lost one would have come first.
            edge.publish(topics.cmd_result(SITE, GW), encode(CommandResult(v=1, id="marker", ok=True,
                                                                           detail="applied", ts=ts)))
            wait_until(lambda: desk.link is not None and desk.link.results >= 1, 10, "the marker arrived")
            assert desk.link is not None and desk.link.results == 1
    finally:
        edge.close()
    assert events.of(ident) == []
    seen = open_command_store(repo).get(ident, datetime.now(UTC) + timedelta(days=1))
    assert seen is not None and seen.state == "expired"


@pytest.mark.parametrize("owner", ["command link", "ops service"])
def test_both_links_fail_over_from_a_dead_broker_to_the_next_url(
    mosquitto: MosquittoFactory, caplog: pytest.LogCaptureFixture, owner: str
) -> None:
    """The shared client factory (mqttlink/link.py): a refused first URL, the next
    one of the list is tried, and the failover is logged under the owner's logger."""
    server = mosquitto()
    urls = [f"mqtt://127.0.0.1:{free_port('127.0.0.1')}", server.url]
    link: CommandLink | OpsMqttLink
    if owner == "command link":
        link = CommandLink(",".join(urls), client_id="test-api-failover", on_result=lambda *_a: None)
        logger_name = "ops_center.commands.link"
    else:
        link = OpsMqttLink(urls, client_id="test-ops-failover", sink=lambda _m: None, receive_maximum=10,
                           session_expiry_s=60, keepalive_s=30)
        logger_name = "ops_center.service.mqtt"
    caplog.set_level(logging.INFO, logger=logger_name)
    link.start()
    try:
        assert link.subscribed.wait(15), f"{owner} did not reach the second broker"
    finally:
        link.stop()
    assert any(r.name == logger_name and r.getMessage() == f"MQTT failover: next attempt on {server.url}"
               for r in caplog.records), caplog.text


@contextmanager
def pg_repo(server: PostgresServer) -> Iterator[PostgresOpsRepository]:
    """The store on a private PostgreSQL with TimescaleDB (the ingest's schema; the test stops
    and starts the server), outliving the API processes of the test."""
    url = server.fresh_db("commands")
    migrate_ingest_pg(url)
    r = PostgresOpsRepository(url, min_size=1, max_size=4)
    r.open()
    try:
        r.migrate()
        seed(r, pg_rows(url))
        add_users(r)
        yield r
    finally:
        r.close()


@pytest.mark.timeout(240)
@pytest.mark.parametrize("api_restarts", [False, True], ids=["api-stays", "api-restarts"])
def test_a_result_that_arrives_while_the_database_is_down_is_recorded_once_when_it_is_back(
    secured: tuple[MosquittoServer, dict[str, str]], make_timescale: Callable[[], TimescaleServer],
    api_restarts: bool,
) -> None:
    server, accounts = secured
    pg = make_timescale()
    url = f"mqtt://ops-api:{accounts['ops-api']}@127.0.0.1:{server.port}"
    # The edge, simulated on the gateway's own account: it receives the command and answers.
    edge = Client(server, GW, accounts[GW])
    try:
        edge.subscribe(topics.cmd(SITE, GW))
        with pg_repo(pg) as repo:
            feed = Feed()
            events = Events(feed)
            with api(repo, url, feed) as (desk, client):
                link = desk.link
                assert link is not None
                staff = auth(login(client, "tn-staff"))
                r = client.post(V1, json={**SET_LAMP, "ttl_s": 10}, headers=staff)
                assert r.status_code == 202, r.text
                ident: str = r.json()["id"]
                edge.wait(1, 10, "the command reached the edge")
                pg.stop_immediate()
                answer = CommandResult(v=1, id=ident, ok=True, detail="applied", ts=datetime.now(UTC))
                edge.publish(topics.cmd_result(SITE, GW), encode(answer))
                wait_until(lambda: link.retries >= 1, 30, "an attempt to record the result failed")
                assert (link.pending, link.results, link.bad_results) == (1, 0, 0)
                assert events.answers(ident) == []
                if not api_restarts:
                    pg.start()
                    recorded = events.wait_answer(ident, 60)
                    wait_until(lambda: link.pending == 0, 10, "the result acknowledged once recorded")
                    assert (link.results, link.bad_results) == (1, 0)
            if api_restarts:
                # The API stopped with the result unacknowledged: the broker keeps it in the
                # session and hands it to the next run, once the database is back.
                assert events.answers(ident) == []
                pg.start()
                feed = Feed()
                events = Events(feed)
                with api(repo, url, feed) as (desk, _client):
                    link = desk.link
                    assert link is not None
                    recorded = events.wait_answer(ident, 60)
                    wait_until(lambda: link.pending == 0, 10, "the redelivered result acknowledged")
                    assert (link.results, link.bad_results) == (1, 0)
            # Acknowledged means gone from the broker: the next run gets only what is new.
            feed = Feed()
            later_events = Events(feed)
            with api(repo, url, feed) as (desk, _client):
                link = desk.link
                assert link is not None
                edge.publish(topics.cmd_result(SITE, GW), encode(CommandResult(
                    v=1, id="marker", ok=True, detail="applied", ts=datetime.now(UTC))))
                wait_until(lambda: link.results >= 1, 10, "the marker arrived")
                assert link.results == 1 and link.pending == 0
            assert later_events.answers(ident) == []
            stored = open_command_store(repo).get(ident, datetime.now(UTC) + timedelta(days=1))
    finally:
        edge.close()
    assert events.answers(ident) == recorded, "one command event for the answer"
    assert [(e["state"], e["detail"], e["gateway"]) for e in recorded] == [("applied", "applied", GW)]
    assert stored is not None and (stored.state, stored.result_at) == ("applied", answer.ts)
