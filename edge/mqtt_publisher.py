"""The publisher port's MQTT adapter (paho-mqtt 2.x, clients built by mqttlink).

:class:`MqttPublisher` choices, each for a reason in docs/reliability.md:

- **MQTT 5**, not 3.1.1: the session expiry is per client (MQTT-3.1.2.11.2), a gateway can
  leave with "disconnect with Will Message" (reason 0x04, MQTT-3.14.2.1) so its retained
  status turns offline at once when its signal goes, and PUBACK carries a reason code, so a
  refused publish (0x87 not authorized, 0x97 quota) is counted instead of looking delivered.
  Oversize is the one MQTT 5 trap (0x95 makes paho 2.2 loop on protocol errors) and
  :func:`edge.batching.seal` makes it impossible: nothing over 256 KiB is ever published.
- **QoS 1, persistent session** (``clean_start=False`` + session expiry), client id =
  username = gateway id (the broker's ACL binds ``%u``).
- **Retained status** on every connect and a **Last Will** of the same shape, ``offline``.
- **Failover and back-off are ours**: paho reconnects to one host only. Each connection gets
  a fresh ``paho.Client`` with ``reconnect_on_failure=False``, driven by one supervisor
  thread that rotates through the broker URLs (the next URL at once, exponential back-off
  with jitter once every URL has failed). A fresh client also means paho never re-sends
  from its in-memory queue behind our back: after a reconnect the agent decides what to
  re-send, from the outbox.
- **Bounded window**: the agent never has more than ``window`` batches awaiting PUBACK;
  paho's own in-flight limit is set just above it (the status messages), so paho never
  queues. Message ids (1..65535, wrapping) only need to be unique among those in flight.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from contract import topics
from contract.brokers import BrokerUrl
from contract.codec import decode_ack
from contract.errors import DecodeError
from edge.errors import ConfigError
from edge.mqtt_session import DISCONNECT_WITH_WILL, STABLE_S, Session, cut
from edge.publisher import (
    BadAck,
    CommandReceived,
    Connected,
    ConnectFailed,
    Disconnected,
    EventSink,
    Published,
    WatermarkReceived,
)
from mqttlink.client import SessionOptions, connect, new_client

logger = logging.getLogger(__name__)

_MISSING = object()


class MqttPublisher:
    def __init__(
        self,
        *,
        gateway: str,
        site: str,
        urls: Sequence[BrokerUrl],
        sink: EventSink,
        will: Callable[[], bytes],
        window: int,
        keepalive_s: int = 30,
        session_expiry_s: int = 7 * 86_400,
        connect_timeout_s: float = 10.0,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 60.0,
        rng: random.Random | None = None,
        ca_file: str | None = None,
    ) -> None:
        if not urls:
            raise ConfigError("no broker URL")
        self._gateway = gateway
        self._urls = list(urls)
        self._sink = sink
        self._will = will
        self._window = window
        self._keepalive_s = keepalive_s
        self._session_expiry_s = session_expiry_s
        self._connect_timeout_s = connect_timeout_s
        self._reconnect_min_s = reconnect_min_s
        self._reconnect_max_s = reconnect_max_s
        self._rng = rng or random.Random()
        self._ca_file = ca_file  # mqtts:// trusts this CA file (PEM) instead of the system's
        self._telemetry_topic = topics.telemetry(site, gateway)
        self._status_topic = topics.status(site, gateway)
        self._ack_topic = topics.ack(site, gateway)
        self._cmd_topic = topics.cmd(site, gateway)
        self._result_topic = topics.cmd_result(site, gateway)

        self._cond = threading.Condition()
        self._link_up = False
        self._link_epoch = 0  # bumped on every link-up, to cut a back-off short
        self._closing = False
        self._leave_with_will = True
        self._disconnect_timeout_s = self._connect_timeout_s
        self._session: Session | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> MqttPublisher:
        self._thread = threading.Thread(target=self._supervise, name=f"edge-mqtt-{self._gateway}",
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self, *, final_status: bytes | None = None, timeout_s: float = 5.0) -> bool:
        acked = False
        if final_status is not None:
            done = threading.Event()
            if self._publish(self._status_topic, final_status, done, retain=True):
                acked = done.wait(timeout_s)
        with self._cond:
            # Without an acknowledged offline status, leave with the Will: the broker then
            # publishes the offline status itself.
            self._leave_with_will = not acked
            # A clean DISCONNECT gets the whole shutdown budget to leave: if it cannot and the
            # connection is cut instead, the broker publishes the Will, whose status (made at
            # connect time) would overwrite the acknowledged final one with an older seq. (The
            # other way a clean leave turned into a cut, an unread ack at close: _stop_acks.)
            self._disconnect_timeout_s = max(self._connect_timeout_s, timeout_s)
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        return acked

    # -- called by the agent -----------------------------------------------------------------

    def set_link(self, up: bool) -> None:
        with self._cond:
            if up and not self._link_up:
                self._link_epoch += 1
            self._link_up = up
            self._cond.notify_all()

    def publish_batch(self, seq: int, payload: bytes) -> bool:
        return self._publish(self._telemetry_topic, payload, seq)

    def publish_status(self, payload: bytes) -> bool:
        return self._publish(self._status_topic, payload, None, retain=True)

    def publish_result(self, payload: bytes) -> bool:
        return self._publish(self._result_topic, payload, None)

    def _publish(self, topic: str, payload: bytes, tag: int | threading.Event | None, *,
                 retain: bool = False) -> bool:
        session = self._session
        if session is None or not session.ready or not self._link_up:
            return False
        info = session.client.publish(topic, payload, qos=1, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            # The connection is going; the supervisor will report it. The batch stays in
            # the outbox and is re-sent after the reconnect.
            return False
        with session.lock:
            early = session.early.pop(info.mid, None)
            if early is None:
                session.pending[info.mid] = tag
                return True
        self._acknowledge(tag, *early)
        return True

    def _acknowledge(self, tag: int | threading.Event | None, ok: bool, reason: str) -> None:
        if isinstance(tag, threading.Event):
            tag.set()
        elif tag is not None:
            self._sink(Published(tag, ok, reason))

    # -- the supervisor thread ---------------------------------------------------------------

    def _supervise(self) -> None:
        failures = 0
        index = 0
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closing or self._link_up)
                if self._closing:
                    return
                epoch = self._link_epoch
            url = self._urls[index % len(self._urls)]
            session, reason = self._connect(url)
            if session is None:
                failures += 1
                index += 1
                self._sink(ConnectFailed(str(url), reason))
                delay = self._backoff_s(failures)
                logger.warning("cannot connect to %s (%s); next attempt %s in %.1f s", url, reason,
                               self._urls[index % len(self._urls)], delay)
                self._wait_backoff(delay, epoch)
                continue
            started = time.monotonic()
            self._session = session
            logger.info("connected to %s (session present: %s)", url, session.session_present)
            self._sink(Connected(str(url), session.session_present))
            closing, link_up = self._wait_session_end(session)
            # Leaving because the link is down, or stopping without an acknowledged offline
            # status: disconnect with the Will, so the retained status turns offline.
            with_will = self._leave_with_will if closing else not link_up
            self._session = None
            reason = self._end(session, with_will=with_will)
            self._sink(Disconnected(str(url), reason))
            if closing:
                return
            if link_up:
                logger.warning("connection to %s lost: %s", url, reason)
                failures = 0 if time.monotonic() - started >= STABLE_S else failures + 1
                if failures:
                    self._wait_backoff(self._backoff_s(failures), None)
            else:
                logger.info("link down: disconnected from %s", url)
                failures = 0

    def _wait_backoff(self, delay_s: float, link_epoch: int | None) -> None:
        """Wait out a back-off; cut short by close() or (with ``link_epoch``) a new link-up."""
        with self._cond:
            self._cond.wait_for(
                lambda: self._closing or (link_epoch is not None and self._link_epoch != link_epoch),
                timeout=delay_s)

    def _wait_session_end(self, session: Session) -> tuple[bool, bool]:
        """Until the connection drops, the link goes down or close(); (closing, link_up)."""
        with self._cond:
            self._cond.wait_for(lambda: session.closed or self._closing or not self._link_up)
            return self._closing, self._link_up

    def _backoff_s(self, failures: int) -> float:
        """No wait before trying the next URL; exponential back-off with equal jitter once a
        whole round of URLs has failed (so a fleet does not reconnect in lockstep)."""
        n = len(self._urls)
        if failures % n:
            return 0.0
        rounds = failures // n
        base = min(self._reconnect_max_s, self._reconnect_min_s * 2.0 ** (rounds - 1))
        return base / 2 + self._rng.uniform(0, base / 2)

    def _session_options(self) -> SessionOptions:
        return SessionOptions(client_id=self._gateway, keepalive_s=self._keepalive_s,
                              session_expiry_s=self._session_expiry_s)

    def _new_client(self, url: BrokerUrl, session_box: list[Session]) -> mqtt.Client:
        # The persistent session: MQTT 5 clean_start=False + Session Expiry Interval, MQTT 3.1.1
        # clean_session=False (mqttlink/client.py); this class fails over itself (above).
        client = new_client(url, self._session_options(), ca_file=self._ca_file,
                            default_username=self._gateway, reconnect_on_failure=False)
        client.connect_timeout = self._connect_timeout_s
        client.max_inflight_messages_set(self._window + 2)
        client.will_set(self._status_topic, self._will(), qos=1, retain=True)

        def on_connect(c: mqtt.Client, _u: Any, flags: Any, rc: ReasonCode, _p: Any) -> None:
            session = session_box[0]
            if not rc.is_failure:
                # Our own ack and cmd only: the broker's ACL allows nothing else (docs/contract.md).
                c.subscribe([(self._ack_topic, 1), (self._cmd_topic, 1)])
            with self._cond:
                session.session_present = bool(getattr(flags, "session_present", False))
                session.connack = rc
                self._cond.notify_all()

        def on_disconnect(_c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
            session = session_box[0]
            with self._cond:
                session.closed = True
                session.close_reason = str(rc)
                self._cond.notify_all()

        def on_publish(_c: mqtt.Client, _u: Any, mid: int, rc: ReasonCode, _p: Any) -> None:
            session = session_box[0]
            ok, reason = not rc.is_failure, str(rc)
            with session.lock:
                tag = session.pending.pop(mid, _MISSING)
                if tag is _MISSING:
                    session.early[mid] = (ok, reason)
                    return
            if not ok:
                logger.error("broker refused a publish: %s", reason)
            assert tag is None or isinstance(tag, int | threading.Event)
            self._acknowledge(tag, ok, reason)

        def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
            # An exception here would kill paho's network thread (docs/reliability.md).
            if msg.topic == self._cmd_topic:
                # Handed over undecoded: the agent's thread judges and answers it. Not
                # retained by contract; an empty retained message only clears one.
                if msg.payload or not msg.retain:
                    self._sink(CommandReceived(bytes(msg.payload)))
                return
            if msg.topic != self._ack_topic:
                # Only our own watermark may delete from our outbox. A broker that delivers
                # other topics on this subscription (amqtt 0.12 sends retained messages of
                # other topics to a new subscriber) must never move it.
                logger.debug("ignoring a message on %s (not our ack topic)", msg.topic)
                return
            if not msg.payload:
                # An empty retained message deletes the retained watermark (MQTT-3.3.1-10):
                # nothing is acknowledged by it.
                return
            try:
                ack = decode_ack(bytes(msg.payload))
            except DecodeError as exc:
                logger.warning("ignoring a bad ack on %s: %s", msg.topic, exc)
                self._sink(BadAck(str(exc)))
                return
            except Exception as exc:
                logger.exception("ack handling failed")
                self._sink(BadAck(repr(exc)))
                return
            self._sink(WatermarkReceived(ack.seq))

        def on_unsubscribe(_c: mqtt.Client, _u: Any, _mid: int, _rcs: Any, _p: Any) -> None:
            session_box[0].unsubscribed.set()

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_publish = on_publish
        client.on_message = on_message
        client.on_unsubscribe = on_unsubscribe
        return client

    def _connect(self, url: BrokerUrl) -> tuple[Session | None, str]:
        box: list[Session] = []
        client = self._new_client(url, box)
        session = Session(url, client)
        box.append(session)
        try:
            connect(client, url, self._session_options())
        except (OSError, ValueError) as exc:
            return None, str(exc) or type(exc).__name__
        client.loop_start()
        with self._cond:
            self._cond.wait_for(lambda: session.connack is not None or session.closed or self._closing,
                                timeout=self._connect_timeout_s)
            connack = session.connack
        if connack is not None and not connack.is_failure and not session.closed:
            return session, ""
        reason = "no CONNACK" if connack is None else f"refused: {connack}"
        self._end(session, with_will=False)
        return None, reason

    def _stop_acks(self, session: Session) -> None:
        """Before a clean DISCONNECT, stop the watermark flow and wait for the UNSUBACK (the
        acks that were on their way arrive before it and are read). paho closes the socket
        right after writing DISCONNECT; with an ack PUBLISH still unread the kernel sends a
        reset, the broker may lose the DISCONNECT with it, and publishes the Will — an offline
        status made at connect time, over the acknowledged final one. The ack topic is
        retained, so the next connection's subscription gets the watermark back; the command
        subscription stays, so commands sent while the agent is stopped still wait for it."""
        rc, _mid = session.client.unsubscribe(self._ack_topic)
        wait_s = min(self._disconnect_timeout_s, 2.0)
        if rc == mqtt.MQTT_ERR_SUCCESS and not session.unsubscribed.wait(wait_s):
            logger.debug("no UNSUBACK for %s before disconnecting", self._ack_topic)

    def _end(self, session: Session, *, with_will: bool) -> str:
        """Disconnect (if still connected) and stop the session's network thread."""
        client = session.client
        if not session.closed:
            if with_will and not session.url.mqtt5:
                # MQTT 3.1.1 has no "disconnect with Will": a DISCONNECT discards it
                # (MQTT-3.1.2-10), so end the connection without one and the broker
                # publishes the Will as for a lost link (MQTT-3.1.2-8).
                cut(client)
            elif with_will:
                client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT,
                                                         identifier=DISCONNECT_WITH_WILL))
            else:
                if session.ready:
                    self._stop_acks(session)
                client.disconnect()
            with self._cond:
                sent = self._cond.wait_for(lambda: session.closed, timeout=self._disconnect_timeout_s)
            if not sent:
                # The DISCONNECT cannot leave (dead link): end the connection ourselves,
                # else paho's thread lingers until the keepalive expires.
                cut(client)
        # The paho thread ends once the socket is closed (reconnect_on_failure=False).
        client.loop_stop()
        return session.close_reason or "closed"
