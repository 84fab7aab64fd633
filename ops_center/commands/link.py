"""The API process's own MQTT link for operator commands (docs/contract.md ``cmd`` / ``cmd/result``).

``CommandLink`` publishes each command QoS 1 to its gateway's ``cmd`` topic and subscribes
(QoS 1) to every gateway's ``cmd/result``. With MQTT 5 that is the shared subscription
``$share/ops-api/smartward/v1/+/+/cmd/result`` (MQTT-4.8.2): several API workers split the
results between them, and each result is recorded once by whichever worker gets it (the
store, not the worker's memory, holds the state, so any worker answers ``GET`` for any
command). Over MQTT 3.1.1 (``?protocol=3.1.1``, e.g. the demo's embedded broker) it is the
plain filter.

Its broker account is its own (``ops-api`` in the generated ACL: write ``+/+/cmd``, read
``cmd/result``): with ``use_username_as_clientid`` two processes on one account would take
each other's session over. So it connects only when ``SMARTWARD_COMMANDS_MQTT_URL`` is set;
without it the API answers a command with 503 ``broker_unavailable``.

Persistent session (the link is ``mqttlink.link.Link``, shared with the ingest and the ops service): MQTT 5
``clean_start=False`` with a Session Expiry Interval of ``SMARTWARD_COMMANDS_SESSION_EXPIRY_S``
(1 h by default, the longest command TTL), MQTT 3.1.1 ``clean_session=False``. A result that
the edge publishes while the API is stopped or cut off waits in the broker and arrives when the
link reconnects with the same client id; the command is then recorded as the edge answered
(a late answer wins over the TTL: the edge judged expiry when the command reached it), not
shown as ``expired``. The client id is stable across restarts: the broker account's name
under the shipped ``use_username_as_clientid true``, else ``smartward-ops-api-{hostname}``
(one API process with a command link per host and account). Past the expiry the broker drops
the session and what it queued: the command then shows ``expired``.

Mosquitto 2.0.11, measured (the shared subscription of a session that is away): the broker
queues the results for that session and delivers them when it resumes
(``session present``), also across a broker restart with persistence; but it hands the
messages of a share group round-robin to *every* session in the group, connected or not, so
a second session that stays away (another client id that never comes back) takes its share
into its queue until its own expiry, and Mosquitto then drops them rather than passing them
to the group (MQTT 5 §4.8.2 says SHOULD; eclipse-mosquitto/mosquitto#2662). Hence the stable
client id: a restarted API resumes its session instead of leaving one behind. The demo's
embedded amqtt 0.12 answers ``session present`` but did not deliver a result published while
the link was away (measured): there such a result is still lost.

QoS 1 may deliver a result twice (a redelivery after a reconnect, or a retried command that
the edge answers again): ``CommandDesk.on_result`` (ops_center/commands/desk.py) applies only
the first answer of the command's gateway to a pending command (``CommandStore.record_result``
changes nothing otherwise), so a copy writes nothing and tells no live screen.

A result survives a store outage: the link acknowledges by hand (paho ``manual_ack``) and a
PUBACK leaves only once the result is recorded, or is known to need no recording (a copy, an
unknown command, a malformed payload). paho's network thread only queues what arrives; one
worker thread (``mqttlink.acks.InOrderAcks``) records the results in arrival order and acks each when
it is done, so PUBACKs leave in the order the PUBLISHes came (MQTT 5 §4.6). While the store
is unavailable (``RepositoryUnavailable``) the result at the head stays unacknowledged and is
retried, 0.5 s doubling to 10 s; the ones behind it wait. A poison result (outside the
contract's bounds, refused by the store for good, or one whose handling raises) is counted
(``smartward_api_command_results_refused``), logged and acknowledged: it never blocks the line.
The Receive Maximum the link sends (100,
MQTT-3.1.2.11.3; over 3.1.1 the broker's ``max_inflight_messages``, 100 in deploy/mosquitto)
caps what the broker has out to us, so the queue is bounded and the rest waits in the broker's
session. A result still
unacknowledged when the link stops or loses its connection is redelivered by the broker on the
next connect (MQTT-4.4.0-1) and recorded then. A packet identifier means something only on the
connection that delivered it: a reconnect drops what is queued from the earlier connection
(it comes again) and an ack never crosses to another connection (as in ``ingest/worker.py``).

``CommandDesk`` (ops_center/commands/desk.py) is the glue the routes use: the store, the
link, the feed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import paho.mqtt.client as mqtt
from prometheus_client import CollectorRegistry, Gauge

from contract import topics
from contract.bounds import safe_text
from contract.brokers import BrokerUrlError, parse_broker_urls
from contract.codec import decode_command_result
from contract.errors import ContractError
from contract.models import CommandResult
from mqttlink.acks import RETRY_MAX_S, RETRY_MIN_S, Delivery, InOrderAcks
from mqttlink.client import SessionOptions, url_set_problem
from mqttlink.link import Link, OverLink
from ops_center.adapters.repository import RepositoryUnavailable

logger = logging.getLogger(__name__)

SHARE_GROUP = "ops-api"
DEFAULT_SESSION_EXPIRY_S = 3600
# Unacknowledged results the broker may have out to the link (MQTT 5 Receive Maximum): the
# bound of the link's queue while the store is down.
RESULTS_RECEIVE_MAXIMUM = 100
ResultSink = Callable[[str, str, CommandResult], None]  # (site, gateway, result)


class CommandLinkError(Exception):
    """The command link cannot be configured (a bad broker URL)."""


class CommandLink(OverLink):
    def __init__(self, url: str, *, client_id: str, on_result: ResultSink, keepalive_s: int = 30,
                 session_expiry_s: int = DEFAULT_SESSION_EXPIRY_S,
                 receive_maximum: int = RESULTS_RECEIVE_MAXIMUM, retry_min_s: float = RETRY_MIN_S,
                 retry_max_s: float = RETRY_MAX_S) -> None:
        try:
            urls = parse_broker_urls(url)
        except BrokerUrlError as exc:
            raise CommandLinkError(str(exc)) from exc
        problem = url_set_problem(urls)
        if problem is not None:
            raise CommandLinkError(problem)
        self._on_result = on_result
        self.results = 0
        self.bad_results = 0
        self._acks = InOrderAcks(self._handle, self._ack, retry_min_s=retry_min_s, retry_max_s=retry_max_s)
        # Over MQTT 3.1.1 (e.g. the demo's embedded broker) the plain filter: no shared ones.
        results = (topics.subscription("cmd/result", share_group=SHARE_GROUP) if urls[0].mqtt5
                   else topics.subscription("cmd/result"))
        self.link = Link(
            urls,
            SessionOptions(client_id=client_id, keepalive_s=keepalive_s, session_expiry_s=session_expiry_s,
                           receive_maximum=receive_maximum, manual_ack=True),
            subscriptions=[results], on_message=self._on_message,
            # A connection came or went: what earlier connections delivered comes again.
            on_state=lambda _connected, generation: self._acks.new_generation(generation),
            log=logger, name="command link",
        )

    @property
    def pending(self) -> int:
        """Results received and not yet acknowledged (waiting for the store, or in line)."""
        return self._acks.pending

    @property
    def retries(self) -> int:
        """Failed attempts to record a result (total)."""
        return self._acks.retries

    @property
    def refused(self) -> int:
        """Results acknowledged without being recorded: outside the contract, refused by the
        store for good, or whose handling raised (total)."""
        return self.bad_results + self._acks.errors

    def register_metrics(self, registry: CollectorRegistry) -> None:
        """The link's gauges in a metrics registry (the API's ``/metrics``)."""
        pending = Gauge("smartward_api_command_results_pending",
                        "command results received and not yet recorded and acknowledged", registry=registry)
        pending.set_function(lambda: self.pending)
        retries = Gauge("smartward_api_command_result_retries",
                        "failed attempts to record a command result (total)", registry=registry)
        retries.set_function(lambda: self.retries)
        refused = Gauge("smartward_api_command_results_refused",
                        "command results acknowledged without being recorded: outside the contract, "
                        "refused by the store, or a bug (total)", registry=registry)
        refused.set_function(lambda: self.refused)

    def start(self) -> None:
        """Connect in the background (the API starts while the broker is down)."""
        self._acks.start()
        self.link.start()

    def stop(self) -> None:
        """Let the result being recorded finish (and its ack out), then disconnect; the session,
        the results not yet acknowledged and those that arrive meanwhile stay on the broker for
        the session expiry."""
        self._acks.stop()
        self.link.stop()

    def publish(self, site: str, gateway: str, payload: bytes) -> bool:
        """Hand one command to the network (QoS 1, not retained: a command is for now, not
        for a gateway that connects tomorrow); False when not connected."""
        if not self.connected:
            return False
        info = self.link.publish(topics.cmd(site, gateway), payload, qos=1)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def _on_message(self, msg: mqtt.MQTTMessage, generation: int) -> None:
        # paho's network thread: only queued; the worker records it and acks it (manual_ack).
        self._acks.put(Delivery(msg.topic, bytes(msg.payload), msg.mid, msg.qos, generation))

    # --- the results worker (InOrderAcks) ---------------------------------------------------

    def _handle(self, d: Delivery) -> str | None:
        """Record one result; None when it needs no retry (recorded, a copy, unknown, malformed)."""
        try:
            where = topics.parse(d.topic)
            if where.kind != "cmd/result":
                return None
            result = decode_command_result(d.payload)
        except ContractError as exc:
            self.bad_results += 1
            logger.warning("ignoring a bad command result on %s: %s", safe_text(d.topic, 200),
                           safe_text(str(exc), 300))
            return None
        try:
            self._on_result(where.site, where.gateway, result)
        except RepositoryUnavailable as exc:
            return f"could not record the command result {result.id} of {where.gateway}: {exc}"
        except Exception as exc:
            # Refused for good (RepositoryError) or a bug: retrying would block every result
            # behind this one forever. Counted, logged, acknowledged.
            self.bad_results += 1
            logger.exception("recording the command result %s of %s failed (%s); acknowledged, not "
                             "retried", result.id, where.gateway, safe_text(repr(exc), 300))
            return None
        self.results += 1
        return None

    def _ack(self, d: Delivery) -> bool:
        """PUBACK ``d`` if it came on the current connection (else the broker sends it again)."""
        return self.link.ack([d]) == 1
