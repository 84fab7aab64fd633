"""The API process's own MQTT link for operator commands (CONTRACT.md ``cmd`` / ``cmd/result``).

``CommandLink`` publishes each command QoS 1 to its gateway's ``cmd`` topic and subscribes to
every gateway's ``cmd/result``. With MQTT 5 that is the shared subscription
``$share/ops-api/smartward/v1/+/+/cmd/result`` (MQTT-4.8.2): several API workers split the
results between them, and each result is recorded once by whichever worker gets it (the
store, not the worker's memory, holds the state, so any worker answers ``GET`` for any
command). Over MQTT 3.1.1 (``?protocol=3.1.1``, e.g. the demo's embedded broker) it is the
plain filter.

Its broker account is its own (``ops-api`` in the generated ACL: write ``+/+/cmd``, read
``cmd/result``): with ``use_username_as_clientid`` two processes on one account would take
each other's session over. So it connects only when ``SMARTWARD_COMMANDS_MQTT_URL`` is set;
without it the API answers a command with 503 ``broker_unavailable``.

Clean session: results that arrive while no API worker is connected are not kept; the
command then shows as ``expired`` once its TTL passes (the edge may have applied it: its
telemetry tells).

``CommandDesk`` is the glue the routes use: the store, the link, the feed.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.subscribeoptions import SubscribeOptions

from contract import topics
from contract.brokers import BrokerUrl, BrokerUrlError, parse_broker_urls
from contract.codec import decode_command_result
from contract.errors import ContractError
from contract.models import CommandResult
from ops_center.adapters.commands import CommandRecord, CommandStore, open_command_store
from ops_center.adapters.repository import OpsRepository, RepositoryError
from ops_center.feed import Feed
from ops_center.settings import OpsSettings

logger = logging.getLogger(__name__)

SHARE_GROUP = "ops-api"
ResultSink = Callable[[str, str, CommandResult], None]  # (site, gateway, result)


class CommandLinkError(Exception):
    """The command link cannot be configured (a bad broker URL)."""


class CommandLink:
    def __init__(self, url: str, *, client_id: str, on_result: ResultSink, keepalive_s: int = 30) -> None:
        try:
            self._urls: list[BrokerUrl] = parse_broker_urls(url)
        except BrokerUrlError as exc:
            raise CommandLinkError(str(exc)) from exc
        self._mqtt5 = self._urls[0].mqtt5
        self._index = 0
        self._on_result = on_result
        self._keepalive_s = keepalive_s
        self._stopping = False
        self.subscribed = threading.Event()
        self.results = 0
        self.bad_results = 0
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                        protocol=mqtt.MQTTv5 if self._mqtt5 else mqtt.MQTTv311)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_connect_fail = self._on_connect_fail
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        c.reconnect_delay_set(min_delay=1, max_delay=10)
        if self._urls[0].tls:
            c.tls_set()
        self._client = c

    @property
    def connected(self) -> bool:
        return self._client.is_connected()

    def start(self) -> None:
        """Connect in the background (the API starts while the broker is down)."""
        self._connect_async(self._urls[0])
        self._client.loop_start()

    def stop(self) -> None:
        self._stopping = True
        self._client.disconnect()
        self._client.loop_stop()

    def publish(self, site: str, gateway: str, payload: bytes) -> bool:
        """Hand one command to the network (QoS 1, not retained: a command is for now, not
        for a gateway that connects tomorrow); False when not connected."""
        if not self.connected:
            return False
        info = self._client.publish(topics.cmd(site, gateway), payload, qos=1)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def _connect_async(self, url: BrokerUrl) -> None:
        self._client.username_pw_set(url.username, url.password)
        self._client.connect_async(url.host, url.port, keepalive=self._keepalive_s)

    def _rotate(self) -> None:
        if self._stopping or len(self._urls) == 1:
            return
        self._index = (self._index + 1) % len(self._urls)
        self._connect_async(self._urls[self._index])

    # --- paho callbacks (network thread: never raise) --------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason_code: Any, _p: Any) -> None:
        try:
            if reason_code.is_failure:
                logger.warning("command link refused by %s: %s", self._urls[self._index], reason_code)
                return
            logger.info("command link connected to %s", self._urls[self._index])
            if self._mqtt5:
                filt = topics.subscription("cmd/result", share_group=SHARE_GROUP)
                client.subscribe([(filt, SubscribeOptions(qos=1))])
            else:
                client.subscribe([(topics.subscription("cmd/result"), 1)])
        except Exception:
            logger.exception("command link on_connect failed")

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, reason_codes: Any, _p: Any) -> None:
        if any(getattr(rc, "is_failure", False) for rc in reason_codes):
            logger.error("command results subscription refused by the broker: %s", reason_codes)
            return
        self.subscribed.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason_code: Any, _p: Any) -> None:
        self.subscribed.clear()
        if not self._stopping:
            logger.warning("command link disconnected: %s", reason_code)
            self._rotate()

    def _on_connect_fail(self, _c: mqtt.Client, _u: Any) -> None:
        self._rotate()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        # An exception here would kill paho's network thread (RELIABILITY.md).
        try:
            where = topics.parse(msg.topic)
            if where.kind != "cmd/result":
                return
            result = decode_command_result(bytes(msg.payload))
        except ContractError as exc:
            self.bad_results += 1
            logger.warning("ignoring a bad command result on %s: %s", msg.topic, exc)
            return
        try:
            self._on_result(where.site, where.gateway, result)
            self.results += 1
        except Exception:
            self.bad_results += 1
            logger.exception("recording the command result %s failed", result.id)


class CommandDesk:
    """What the command routes use: the store, the link (None: commands cannot be sent), the
    feed that tells live screens, the clock."""

    def __init__(self, store: CommandStore, feed: Feed, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.feed = feed
        self.clock = clock
        self.link: CommandLink | None = None

    @classmethod
    def build(cls, settings: OpsSettings, repo: OpsRepository, feed: Feed,
              clock: Callable[[], datetime]) -> CommandDesk:
        desk = cls(open_command_store(repo), feed, clock)
        url = settings.commands_mqtt_url
        if url is not None:
            client_id = f"smartward-ops-api-{socket.gethostname()}-{os.getpid()}"[:64]
            desk.link = CommandLink(url.get_secret_value(), client_id=client_id, on_result=desk.on_result)
        return desk

    def start(self) -> None:
        if self.link is not None:
            self.link.start()

    def stop(self) -> None:
        if self.link is not None:
            self.link.stop()

    def readiness(self, base: Callable[[], Mapping[str, bool]]) -> Callable[[], Mapping[str, bool]]:
        """``base``'s checks, plus the command link's connection when there is one."""
        link = self.link
        if link is None:
            return base

        def checks() -> Mapping[str, bool]:
            return {**base(), "commands": link.connected}

        return checks

    def on_result(self, site: str, gateway: str, result: CommandResult) -> None:
        """A result from the broker (paho's thread): record it, tell the live screens."""
        try:
            updated = self.store.record_result(result.id, gateway, result.ok, result.detail, result.ts)
        except RepositoryError:
            logger.exception("could not record command result %s", result.id)
            raise
        if updated is None:
            logger.debug("command result %s from %s changed nothing (unknown, redelivered or late)",
                         result.id, gateway)
            return
        if updated.site != site:
            logger.warning("command %s answered on %s's topic, but it is of %s",
                           result.id, site, updated.site)
        self.publish_event(updated)

    def publish_event(self, c: CommandRecord) -> None:
        self.feed.publish("command", c.site, {
            "id": c.id, "sensor": c.sensor, "gateway": c.gateway, "name": c.name, "state": c.state,
            "detail": c.detail, "by": c.created_by,
        })
