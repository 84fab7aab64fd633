"""The MQTT link package (mqttlink/): client construction from a broker URL, the CONNECT of a
persistent session, and acks bound to the connection that delivered a message."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from contract.brokers import BrokerUrl
from mqttlink.client import SessionOptions, connect, new_client, url_set_problem
from mqttlink.link import Link

LOG = logging.getLogger("test.mqttlink")
PERSISTENT = SessionOptions(client_id="c1", keepalive_s=30, session_expiry_s=600, receive_maximum=7,
                            manual_ack=True)


@dataclass(frozen=True)
class Msg:
    mid: int
    qos: int
    generation: int


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def connect(self, *a: Any, **kw: Any) -> None:
        self.calls.append(("connect", a, kw))

    def connect_async(self, *a: Any, **kw: Any) -> None:
        self.calls.append(("connect_async", a, kw))


def test_the_protocol_and_the_session_come_from_the_url() -> None:
    c5 = new_client(BrokerUrl.parse("mqtt://u:p@h:1883"), PERSISTENT)
    c3 = new_client(BrokerUrl.parse("mqtt://h:1883?protocol=3.1.1"), PERSISTENT)
    clean3 = new_client(BrokerUrl.parse("mqtt://h:1883?protocol=3.1.1"), SessionOptions(client_id="c2"))
    assert c5.protocol == mqtt.MQTTv5 and c3.protocol == mqtt.MQTTv311
    assert c3._clean_session is False and clean3._clean_session is True
    assert c5.username == "u" and c5.password == "p"
    assert c5._manual_ack is True


def test_a_persistent_mqtt5_connect_sends_clean_start_false_and_its_properties() -> None:
    rec = Recorder()
    connect(rec, BrokerUrl.parse("mqtt://h:1999"), PERSISTENT, background=True)  # type: ignore[arg-type]
    [(name, args, kw)] = rec.calls
    assert name == "connect_async" and args == ("h", 1999)
    assert kw["clean_start"] is False and kw["keepalive"] == 30
    assert kw["properties"].SessionExpiryInterval == 600 and kw["properties"].ReceiveMaximum == 7
    rec.calls.clear()
    connect(rec, BrokerUrl.parse("mqtt://h:1999?protocol=3.1.1"), PERSISTENT)  # type: ignore[arg-type]
    assert rec.calls == [("connect", ("h", 1999), {"keepalive": 30})]


def test_a_failover_list_must_agree_on_tls_and_protocol() -> None:
    assert url_set_problem([]) == "no MQTT URL"
    assert url_set_problem([BrokerUrl.parse("mqtt://a"), BrokerUrl.parse("mqtts://b")]) is not None
    mixed = [BrokerUrl.parse("mqtt://a"), BrokerUrl.parse("mqtt://b?protocol=3.1.1")]
    assert url_set_problem(mixed) is not None
    assert url_set_problem([BrokerUrl.parse("mqtt://a"), BrokerUrl.parse("mqtt://b")]) is None
    with pytest.raises(ValueError, match="same scheme"):
        Link([BrokerUrl.parse("mqtt://a"), BrokerUrl.parse("mqtts://b")], PERSISTENT, log=LOG)
    with pytest.raises(ValueError, match="sink"):
        Link([BrokerUrl.parse("mqtt://a")], PERSISTENT, subscriptions=["x/#"], log=LOG)


def test_only_qos1_messages_of_the_current_connection_are_acked_in_order(
        monkeypatch: pytest.MonkeyPatch) -> None:
    link = Link([BrokerUrl.parse("mqtt://a")], PERSISTENT, log=LOG)
    acked: list[int] = []
    monkeypatch.setattr(link.client, "ack", lambda mid, qos: acked.append(mid) or mqtt.MQTT_ERR_SUCCESS)
    msgs = [Msg(5, 1, 2), Msg(1, 1, 1), Msg(6, 0, 2), Msg(3, 1, 2)]
    assert link.ack(msgs) == 0 and acked == []  # not connected: nothing leaves
    link.connected, link.generation = True, 2
    assert link.ack(msgs) == 2 and acked == [5, 3]


def test_the_next_attempt_goes_to_the_next_url_round_and_round(monkeypatch: pytest.MonkeyPatch) -> None:
    urls = [BrokerUrl.parse("mqtt://a:1"), BrokerUrl.parse("mqtt://b:2")]
    link = Link(urls, PERSISTENT, log=LOG)
    rec = Recorder()
    monkeypatch.setattr(link.client, "connect_async", rec.connect_async)
    link._on_connect_fail(link.client, None)
    link._on_disconnect(link.client, None, None, "lost", None)
    assert [c[1] for c in rec.calls] == [("b", 2), ("a", 1)]
    link.stopping = True
    link._on_disconnect(link.client, None, None, "bye", None)
    assert len(rec.calls) == 2  # stopping: no further attempt
