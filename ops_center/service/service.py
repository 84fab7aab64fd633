"""The ops service: telemetry, SenML and status from the broker → rules → alerts → incidents → store
and live stream.

Threads (the recorder pattern: one worker fed by a bounded queue)::

    paho network thread ── on_message ──▶ bounded queue ──▶ worker thread
      (only enqueues)                   (+ people's actions)   decode → de-duplicate (gateway, seq)
                                                               → RuleEngine → IncidentManager
                                                               → store (upserts) → Feed
                                                               → every tick: deadlines
                                                               → snapshot → PUBACK

Time: rules run on READING time; lateness comes from the message itself (``sent_at`` − ``ts``).
The wall clock drives only the timers (``tick``): silence, auto-resolve holds, escalation.

Restart without re-raising, without missing anything: the worker saves a snapshot of the engine,
the incident manager and the seqs seen (the repository's ``ops_service_state``) every few
seconds and at stop, and acknowledges a message to the broker only once a saved snapshot covers
it. After a crash the broker redelivers exactly what the snapshot lacks (persistent session,
MQTT-4.4.0-1); alert and incident ids are deterministic, so replaying it upserts the same rows,
timeline entries have a key, and a change the store already had is not published on the feed
again (ops_center/service/persist.py). A redelivered batch whose ``(gateway, seq)`` the state
already holds is a no-op.

Each step's writes are one transaction, and a snapshot is committed in the same transaction as
the step it follows. Changes made by the wall clock (``tick``: silence, escalation, auto-resolve)
cannot be redelivered by the broker, so a tick that changes anything always carries a snapshot.

People's incident actions (acknowledge, resolve, notes through the API) reach the incident
manager through :meth:`OpsService.on_action`, applied by the worker thread like everything else,
so the manager's lifecycle never disagrees with what people did.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Gauge

from contract import senml, topics
from contract.bounds import safe_text
from contract.codec import decode_status, decode_telemetry
from contract.errors import DecodeError, TopicError
from contract.registry import Registry
from mqttlink.acks import hand_over
from ops_center.adapters.records import GatewayStatusRecord, IncidentRecord
from ops_center.adapters.repository import (
    OpsRepository,
    RepositoryError,
    RepositoryUnavailable,
    ServiceSnapshot,
)
from ops_center.api.lifecycle import HumanAction
from ops_center.domain.alerts import AlertChange
from ops_center.domain.correlation import PatternSet
from ops_center.domain.engine import RuleEngine
from ops_center.domain.errors import InvalidTransition, UnknownIncident
from ops_center.domain.incidents import IncidentChange, IncidentManager
from ops_center.domain.maintenance import MaintenanceCalendar, MaintenanceWindow
from ops_center.domain.rules import RuleSet
from ops_center.feed import Feed, FeedEvent
from ops_center.notify.compose import Notifier, build_notifier
from ops_center.service.errors import ServiceStopped
from ops_center.service.mqtt import Inbound, OpsMqttLink
from ops_center.service.persist import ChangeWriter
from ops_center.service.seqs import SeqTracker
from ops_center.service.settings import OpsServiceSettings
from ops_center.service.state import pack, unpack

logger = logging.getLogger(__name__)

STATE_VERSION = 1
_DRAIN_MAX = 200  # messages handled per step before persisting (bounds the work between ticks)
_STOP_GRACE_S = 10.0  # a stopping service keeps retrying a database that is down this long


def _wall() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class ServiceCounters:
    """Totals since start; written by the worker only."""

    messages: int = 0
    telemetry: int = 0
    senml: int = 0  # SenML packs of third-party devices (RFC 8428)
    statuses: int = 0
    duplicates: int = 0
    invalid: int = 0  # undecodable or topic/payload mismatch (the ingest dead-letters them)
    failed: int = 0  # messages whose evaluation raised (a bug): logged, acknowledged, skipped
    readings: int = 0
    alert_changes: int = 0
    incident_changes: int = 0
    ticks: int = 0
    snapshots: int = 0
    snapshot_failures: int = 0
    acked: int = 0
    actions: int = 0
    actions_refused: int = 0  # the manager's lifecycle disagreed (already resolved...)
    loop_errors: int = 0


@dataclass(frozen=True, slots=True)
class ServiceProgress:
    """What a test, the stack or the CLI may look at (a copy, published after each step)."""

    connected: bool
    restored: bool
    store_ok: bool
    counters: ServiceCounters
    through: dict[str, int]  # per gateway: every seq up to this one evaluated
    highest: dict[str, int]  # per gateway: highest seq evaluated
    last_sent: dict[str, datetime]  # per gateway: newest batch sent_at evaluated
    pending_acks: int
    queue_depth: int
    open_incidents: int
    last_snapshot: datetime | None = None


@dataclass(slots=True)
class _GatewayClock:
    last_sent: float  # newest sent_at seen (gateway clock, epoch s)
    last_received: float  # wall time that batch arrived (epoch s)


@dataclass(slots=True)
class _Command:
    run: Callable[[], None]
    done: threading.Event = field(default_factory=threading.Event)


_Control = Literal["stop", "abort"]
_Item = Inbound | _Command | _Control


class OpsService:
    """A context manager: ``with OpsService(...) as svc: ...``; ``stop()`` is graceful (final
    snapshot, acks), ``abort()`` simulates a crash (nothing saved, nothing acknowledged)."""

    def __init__(
        self,
        settings: OpsServiceSettings,
        registry: Registry,
        repo: OpsRepository,
        feed: Feed | None,
        *,
        rules: RuleSet,
        patterns: PatternSet,
        name: str = "ops",
        clock: Callable[[], datetime] = _wall,
        client_id: str | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.repo = repo
        self.feed = feed
        self.name = name
        self._clock = clock
        self.maintenance = MaintenanceCalendar()
        self.engine = RuleEngine(rules, registry, self.maintenance)
        self.manager = IncidentManager(registry, patterns, self.maintenance)
        self.seqs = SeqTracker(window=settings.ops_seq_window)
        # Notifications (issue #13): a second output of the same steps. Without an explicit
        # notifier one is built from the settings (none when no policy file is set).
        if notifier is None:
            notifier = build_notifier(settings, registry, repo, clock=clock)
        self.notifier = notifier
        self.writer = ChangeWriter(
            repo, registry, feed, clock=clock,
            planner=self.notifier.planner if self.notifier is not None else None,
            on_notifications=self.notifier.sender.wake if self.notifier is not None else None)
        self.counters = ServiceCounters()
        self._gw: dict[str, _GatewayClock] = {}
        self._status_state: dict[str, str] = {}
        self._pending: list[Inbound] = []
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=settings.ops_receive_maximum + 64)
        self._stop_requested = threading.Event()
        self._aborting = threading.Event()
        self._done = threading.Event()
        self._cond = threading.Condition()
        self._restored = False
        self._store_ok = True
        self._last_snapshot: datetime | None = None
        self.fatal: BaseException | None = None
        self._started = False
        self._give_up_at: float | None = None
        self._open: set[str] = set()  # live incidents (for the progress view)
        self._unlisten: Callable[[], None] | None = None
        self.link = OpsMqttLink(
            settings.mqtt_urls, client_id=client_id or settings.client_id, sink=self._enqueue,
            receive_maximum=settings.ops_receive_maximum, session_expiry_s=settings.ops_session_expiry_s,
            keepalive_s=settings.ops_keepalive_s, on_state=self._on_link_state,
        )
        self._thread = threading.Thread(target=self._run, name=f"ops-service-{name}", daemon=True)
        self._progress = self._make_progress()

    # --- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> OpsService:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        self._started = True
        if self.feed is not None:
            self._unlisten = self.feed.listen(("maintenance",), self._on_maintenance_event)
        self._thread.start()
        if self.notifier is not None:
            self.notifier.sender.start()
        self.link.start()

    def _stop_listening(self) -> None:
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop taking messages, handle what is queued, save the state, acknowledge, disconnect."""
        if not self._started:
            return
        self._started = False
        self._stop_listening()
        self.link.accepting = False
        self._stop_requested.set()
        self._put_control("stop")
        self._thread.join(timeout=timeout_s)
        if self._thread.is_alive():
            logger.error("ops service worker did not stop within %.0f s", timeout_s)
        if self.notifier is not None:
            self.notifier.sender.stop()
        self.link.stop()
        logger.info("ops service stopped")

    def abort(self) -> None:
        """A crash, for tests: no final snapshot, no acknowledgement, no flush."""
        if not self._started:
            return
        self._started = False
        self._stop_listening()
        self.link.accepting = False
        self._aborting.set()
        self._stop_requested.set()
        self._put_control("abort")
        self._thread.join(timeout=30)
        if self.notifier is not None:
            self.notifier.sender.stop()
        self.link.stop()
        logger.info("ops service aborted (crash simulation)")

    def _put_control(self, item: _Control) -> None:
        while self._thread.is_alive():
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    # --- health and progress (any thread) --------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.link.connected

    @property
    def ready(self) -> bool:
        return self.link.connected and self._restored and self._store_ok and self.fatal is None

    def register_metrics(self, registry: CollectorRegistry) -> None:
        """The service's totals as gauges in a metrics registry (the API's ``/metrics``)."""
        c, stats = self.counters, self.writer.stats
        for name, doc, read in (
            ("smartward_ops_messages", "MQTT messages the ops service took (total)", lambda: c.messages),
            ("smartward_ops_messages_refused",
             "messages refused: outside the contract's bounds, undecodable, topic mismatch (total)",
             lambda: c.invalid),
            ("smartward_ops_messages_failed",
             "messages whose evaluation raised (a bug): logged, acknowledged, skipped (total)",
             lambda: c.failed),
            ("smartward_ops_store_rows_refused", "rows the database refused for good: skipped (total)",
             lambda: stats.refused),
            ("smartward_ops_loop_errors", "errors caught at the worker's loops (total)",
             lambda: c.loop_errors),
        ):
            Gauge(name, doc, registry=registry).set_function(read)

    def progress(self) -> ServiceProgress:
        return self._progress

    def wait_until(self, predicate: Callable[[ServiceProgress], bool], timeout_s: float) -> ServiceProgress:
        """Block until ``predicate(progress)`` holds after some step; TimeoutError at the deadline."""
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self._progress), timeout=timeout_s):
                p = self._progress
                raise TimeoutError(f"ops service: condition not met in {timeout_s} s (messages "
                                   f"{p.counters.messages}, through {p.through}, queue {p.queue_depth})")
            return self._progress

    def _make_progress(self) -> ServiceProgress:
        c = self.counters
        return ServiceProgress(
            connected=self.link.connected, restored=self._restored, store_ok=self._store_ok,
            counters=dataclasses.replace(c),
            through={g: self.seqs.through(g) for g in self._gw},
            highest={g: self.seqs.highest(g) for g in self._gw},
            last_sent={g: datetime.fromtimestamp(v.last_sent, UTC) for g, v in self._gw.items()},
            pending_acks=len(self._pending), queue_depth=self._queue.qsize(),
            open_incidents=len(self._open),
            last_snapshot=self._last_snapshot,
        )

    def _on_link_state(self, connected: bool) -> None:
        # paho's thread: only the flag changes here (the rest belongs to the worker).
        with self._cond:
            self._progress = dataclasses.replace(self._progress, connected=connected)
            self._cond.notify_all()

    def _publish_progress(self) -> None:
        p = self._make_progress()
        with self._cond:
            self._progress = p
            self._cond.notify_all()

    # --- people's actions (any thread) ---------------------------------------------------------------

    def on_action(self, act: HumanAction, record: IncidentRecord) -> None:
        """The API's ``ActionHook``: a person's committed action, applied to the incident manager
        by the worker. Waits (at most ``ops_action_timeout_s``) so a following read agrees."""
        cmd = _Command(lambda: self._apply_action(act))
        if not self._thread.is_alive():
            raise ServiceStopped("the ops service is not running; the action is applied at its next start")
        try:
            self._queue.put(cmd, timeout=self.settings.ops_action_timeout_s)
        except queue.Full:
            logger.warning("ops service busy: %s of %s not applied to the rule state yet", act.action,
                           act.incident_id)
            return
        if not cmd.done.wait(self.settings.ops_action_timeout_s):
            logger.warning("ops service slow: %s of %s queued, not applied yet", act.action, act.incident_id)

    def _apply_action(self, act: HumanAction) -> None:
        note = act.note or ""
        try:
            if act.action == "acknowledge":
                self.manager.acknowledge(act.incident_id, act.by, act.at, note)
            elif act.action == "resolve":
                self.manager.resolve(act.incident_id, act.by, act.at, note)
                self._open.discard(act.incident_id)
                # Whoever was told of it hears it is resolved (committed with the next step).
                self.writer.resolved_by_person(self.manager.get(act.incident_id))
            elif act.action == "note":
                self.manager.annotate(act.incident_id, act.by, act.at, note)
            else:  # assign, escalate: the store holds them; the manager has no such state
                return
        except (UnknownIncident, InvalidTransition) as exc:
            self.counters.actions_refused += 1
            logger.info("incident %s: %s by %s not applied to the rule state: %s", act.incident_id,
                        act.action, act.by, exc)
            return
        self.counters.actions += 1

    def _on_maintenance_event(self, _event: FeedEvent) -> None:
        """A window was set or ended through the API of this process: re-read them before the
        next message (the publisher's thread: only enqueue, never wait)."""
        try:
            self._queue.put_nowait(_Command(self._load_maintenance))
        except queue.Full:  # busy: the periodic refresh picks it up
            logger.info("maintenance change noted; windows re-read at the next refresh")

    # --- the paho thread's side ---------------------------------------------------------------------

    def _enqueue(self, m: Inbound) -> None:
        # The queue holds the Receive Maximum plus room for commands (mqttlink/acks.py).
        hand_over(self._queue, m, self._stop_requested)

    # --- the worker ------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            if not self._restore():
                return
            self._reconcile()
            self._publish_progress()
            self._loop()
        except BaseException as exc:  # the worker's top: fatal, visible, nothing more acked
            self.fatal = exc
            self.counters.loop_errors += 1
            logger.exception("ops service worker stopped by an error; unacked messages will be redelivered")
        finally:
            self._done.set()
            self._publish_progress()

    def _loop(self) -> None:
        s = self.settings
        mono = time.monotonic
        next_tick = mono() + s.ops_tick_interval_s
        next_snapshot = mono() + s.ops_snapshot_interval_s
        next_maintenance = mono() + s.ops_maintenance_refresh_s
        retry_s = s.ops_store_retry_initial_ms / 1000
        while True:
            if self.writer.pending:
                if not self._flush():
                    if self._aborting.is_set() or (self._stop_requested.is_set() and self._give_up()):
                        return
                    self._aborting.wait(retry_s)  # back-off against a database that is down
                    retry_s = min(retry_s * 2, s.ops_store_retry_max_ms / 1000)
                    continue
                retry_s = s.ops_store_retry_initial_ms / 1000
            now = mono()
            deadline = min(next_tick, next_snapshot if self._pending else next_tick)
            items = self._take(max(0.0, deadline - now))
            control: _Control | None = None
            messages: list[Inbound] = []
            for item in items:
                if isinstance(item, Inbound):
                    messages.append(item)
                elif isinstance(item, _Command):
                    self._step(messages)
                    messages = []
                    try:
                        item.run()
                    finally:
                        item.done.set()
                else:
                    control = item
                    break
            if self._aborting.is_set():
                return
            self._step(messages)
            now = mono()
            if now >= next_tick:
                try:
                    self._tick()
                except Exception as exc:  # a bug in a timer must not stop the city's rules
                    self.counters.loop_errors += 1
                    logger.exception("a tick failed; going on: %s", safe_text(repr(exc), 300))
                next_tick = now + s.ops_tick_interval_s
            if now >= next_maintenance:
                self._load_maintenance()
                next_maintenance = now + s.ops_maintenance_refresh_s
            if self._pending and not self.writer.pending and (
                    len(self._pending) >= s.ops_snapshot_max_pending or now >= next_snapshot
                    or control == "stop"):
                if self._snapshot_and_ack():
                    next_snapshot = now + s.ops_snapshot_interval_s
                else:
                    next_snapshot = now + min(1.0, s.ops_snapshot_interval_s)
            self._publish_progress()
            if control == "stop":
                self._final()
                return

    def _give_up(self) -> bool:
        """Stopping with the database down: keep trying for a while, then leave everything
        unacknowledged (the broker redelivers it to the next run)."""
        if self._give_up_at is None:
            self._give_up_at = time.monotonic() + _STOP_GRACE_S
        if time.monotonic() >= self._give_up_at:
            logger.warning("stopping with the database down: %d writes abandoned, %d messages stay "
                           "unacknowledged", self.writer.pending, len(self._pending))
            return True
        return False

    def _final(self) -> None:
        while self.writer.pending and not self._flush():
            if self._give_up():
                return
            self._aborting.wait(0.2)
        self._snapshot_and_ack()  # also what ticks changed since the last one

    def _take(self, timeout_s: float) -> list[_Item]:
        q = self._queue
        try:
            first = q.get(timeout=timeout_s) if timeout_s > 0 else q.get_nowait()
        except queue.Empty:
            return []
        items: list[_Item] = [first]
        while len(items) < _DRAIN_MAX and not isinstance(items[-1], str):
            try:
                items.append(q.get_nowait())
            except queue.Empty:
                break
        return items

    def _flush(self) -> bool:
        ok = self.writer.flush()
        if ok != self._store_ok:
            self._store_ok = ok
            logger.log(logging.INFO if ok else logging.WARNING, "ops store %s",
                       "answering again" if ok else "unavailable: changes wait in memory, nothing is acked")
        return ok

    # --- one step ----------------------------------------------------------------------------------

    def _step(self, messages: list[Inbound]) -> None:
        for m in messages:
            self.counters.messages += 1
            changes: list[AlertChange] = []
            try:
                changes = self._handle(m)
                if changes:
                    # Stored and published at once (not after the rest of the queue): the
                    # latency of an alert is what an operator waits for. The incident manager
                    # reads changes as a story in event time, and a batch yields its changes
                    # series by series: put them back in time order (stable: one alert's raise
                    # stays before its clear), so where a batch happened to be cut never decides
                    # when an incident opens.
                    changes.sort(key=lambda c: c.at)
                    self._record(changes, self.manager.apply(changes, self._clock()))
            except Exception as exc:  # one message must never stop the service
                self.counters.failed += 1
                logger.exception("message on %s (%d bytes) could not be evaluated; acknowledged and "
                                 "skipped: %s", safe_text(m.topic, 200), len(m.payload),
                                 safe_text(repr(exc), 300))
                changes = []
            self._pending.append(m)  # acknowledged with the next snapshot, whatever happened
            if changes:
                self._flush()
        if self.writer.pending:
            self._flush()

    def _record(self, alert_changes: list[AlertChange], incident_changes: list[IncidentChange]) -> None:
        if not alert_changes and not incident_changes:
            return
        self.counters.alert_changes += len(alert_changes)
        self.counters.incident_changes += len(incident_changes)
        for ic in incident_changes:
            inc = ic.incident
            if inc.state != "resolved" and inc.merged_into is None:
                self._open.add(inc.id)
            else:
                self._open.discard(inc.id)
        self.writer.record(alert_changes, incident_changes, self.manager.incident_of)

    def _tick(self) -> None:
        now = self._clock()
        self.counters.ticks += 1
        changes = self.engine.tick(now)
        incident_changes = self.manager.apply(changes, now) if changes else []
        incident_changes += self.manager.tick(now)
        if changes or incident_changes:
            self._record(changes, incident_changes)
            # Wall-clock changes: the broker cannot replay them, so their step carries the
            # snapshot (otherwise a restart re-decides them at another time: a second
            # escalation on the timeline).
            self._snapshot_and_ack()

    def _handle(self, m: Inbound) -> list[AlertChange]:
        try:
            t = topics.parse(m.topic)
        except TopicError as exc:
            return self._refuse(m, str(exc))
        if self.registry.site_of(t.gateway) != t.site:
            # unknown gateway, or one publishing under another site
            return self._refuse(m, f"gateway {t.gateway!r} is not registered under {t.site!r}")
        if t.kind == "telemetry":
            return self._telemetry(m, t.gateway)
        if t.kind == "status":
            return self._status(m, t.site, t.gateway)
        if t.kind == "senml":
            return self._senml(m, t.gateway)
        return []

    def _refuse(self, m: Inbound, why: str) -> list[AlertChange]:
        """A message outside the contract: counted, logged, acknowledged with the next snapshot
        (the ingest keeps it as a dead letter)."""
        self.counters.invalid += 1
        logger.info("refused a message on %s%s: %s", safe_text(m.topic, 200),
                    " (retained)" if m.retain else "", safe_text(why, 300))
        return []

    def _telemetry(self, m: Inbound, gateway: str) -> list[AlertChange]:
        self.counters.telemetry += 1
        try:
            batch = decode_telemetry(m.payload)
        except DecodeError as exc:
            return self._refuse(m, str(exc))
        if batch.gateway != gateway:
            return self._refuse(m, f"payload gateway {batch.gateway!r} on {gateway!r}'s topic")
        sent = batch.sent_at.timestamp()
        if self.seqs.seen(gateway, batch.seq, sent):
            self.counters.duplicates += 1
            return []
        readings = [(r.sensor, r.metric, r.ts, r.value, r.quality) for r in batch.readings]
        self.counters.readings += len(readings)
        changes = self.engine.ingest(readings, batch.sent_at, gateway, m.received_at)
        self.seqs.mark(gateway, batch.seq, sent)
        self._gateway_heard(gateway, sent, m.received_at.timestamp())
        return changes

    def _senml(self, m: Inbound, gateway: str) -> list[AlertChange]:
        """A SenML pack (RFC 8428) of a third-party device: the same readings the ingest
        stores, to the same rules. It has no seq and no send time: stamped as sent when it
        arrived (as the ingest does), and a redelivery re-evaluates nothing, since each
        series takes only readings newer than its last one. It does not move the gateway's
        clock (``_gateway_heard``): that is the gateway's own, and a SenML device is not it."""
        self.counters.senml += 1
        try:
            readings = senml.gateway_readings(m.payload, m.received_at, gateway, self.registry)
        except DecodeError as exc:
            return self._refuse(m, f"senml: {exc}")
        except (RecursionError, ValueError, TypeError, OverflowError) as exc:
            return self._refuse(m, f"senml: undecodable: {exc!r}")
        rows = [(r.sensor, r.metric, r.ts, r.value, r.quality) for r in readings]
        self.counters.readings += len(rows)
        return self.engine.ingest(rows, m.received_at, gateway, m.received_at)

    def _gateway_heard(self, gateway: str, sent: float, recv: float) -> None:
        """The gateway said something stamped ``sent`` (its clock) that arrived at ``recv``
        (wall time): the base from which a later Last Will is placed."""
        gc = self._gw.get(gateway)
        if gc is None:
            self._gw[gateway] = _GatewayClock(sent, recv)
        elif sent >= gc.last_sent:
            gc.last_sent, gc.last_received = sent, recv

    def _status(self, m: Inbound, site: str, gateway: str) -> list[AlertChange]:
        self.counters.statuses += 1
        if not m.payload:
            return []  # a retained status being cleared (MQTT-3.3.1-10)
        try:
            status = decode_status(m.payload)
        except DecodeError as exc:
            return self._refuse(m, str(exc))
        if status.gateway != gateway:
            return self._refuse(m, f"payload gateway {status.gateway!r} on {gateway!r}'s topic")
        ts = status.ts
        if status.state == "online" and not m.retain:
            # A live status is stamped by the gateway's clock like a batch: a Will must not be
            # placed before it. (On a fast simulated clock the gateway's time runs ahead of the
            # wall time between its last batch and a later status; placed from the batch
            # alone, the Will looked older than that status and was ignored.)
            self._gateway_heard(gateway, ts.timestamp(), m.received_at.timestamp())
        gc = self._gw.get(gateway)
        if status.state == "offline" and not m.retain and gc is not None:
            # A Last Will carries the time its gateway CONNECTED (it is written then), in the
            # gateway's clock. The gateway went silent around its last batch plus the wall time
            # since that batch arrived: that estimate, in the gateway's own time base, is when
            # it went offline (also for a simulated fleet on a fast clock).
            estimate = gc.last_sent + max(0.0, m.received_at.timestamp() - gc.last_received)
            if estimate > ts.timestamp():
                ts = datetime.fromtimestamp(estimate, UTC)
            logger.debug("gateway %s offline (Last Will of %s): placed at %s, after its last batch "
                         "sent at %s", gateway, status.ts.isoformat(), ts.isoformat(),
                         datetime.fromtimestamp(gc.last_sent, UTC).isoformat())
        changes = self.engine.gateway_status(gateway, status.state, ts)
        changed = self._status_state.get(gateway) != status.state
        self._status_state[gateway] = status.state
        self.writer.gateway_status(GatewayStatusRecord(
            gateway=gateway, site=site, state=status.state, last_seen=ts,
            outbox_batches=status.outbox_batches, outbox_oldest=status.outbox_oldest,
            dropped_batches=status.dropped_batches, last_seq=status.last_seq, agent=status.agent or None,
        ), changed=changed)
        return changes

    # --- state ---------------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "engine": self.engine.snapshot(),
            "manager": self.manager.snapshot(),
            "seqs": self.seqs.snapshot(),
            "gateways": {g: [c.last_sent, c.last_received] for g, c in self._gw.items()},
            "status": dict(self._status_state),
        }

    def _snapshot_and_ack(self) -> bool:
        """Save the rule state with the step being recorded (one transaction); the messages it
        covers are acknowledged once it is committed (possibly at a later flush, after the
        database came back). False when not committed yet."""
        covers, self._pending = self._pending, []

        def after(ok: bool) -> None:
            if not ok:
                self.counters.snapshot_failures += 1
                logger.warning("rule state not saved; %d messages stay unacknowledged", len(covers))
                self._pending[:0] = covers
                return
            self.counters.snapshots += 1
            self._last_snapshot = self._clock()
            self.counters.acked += self.link.ack(covers)

        self.writer.checkpoint(ServiceSnapshot(self.name, pack(self._state())), after)
        return self._flush()

    def _restore(self) -> bool:
        delay = self.settings.ops_store_retry_initial_ms / 1000
        while True:
            try:
                blob = self.repo.load_service_state(self.name)
                break
            except RepositoryUnavailable as exc:
                logger.warning("rule state not readable yet (%s); retrying in %.1f s", exc, delay)
                if self._stop_requested.wait(delay):
                    return False
                delay = min(delay * 2, self.settings.ops_store_retry_max_ms / 1000)
        self._load_maintenance()
        if blob is not None:
            try:
                data = unpack(blob)
                if data.get("v") != STATE_VERSION:
                    raise ValueError(f"unsupported service state version {data.get('v')!r}")
                self.engine.restore(data["engine"])
                self.manager.restore(data["manager"])
                self.seqs.restore(data["seqs"])
                self._gw = {g: _GatewayClock(float(a), float(b)) for g, (a, b) in data["gateways"].items()}
                self._status_state = dict(data.get("status", {}))
                logger.info("rule state restored: %d active alerts, %d incidents",
                            len(self.engine.book.active), len(self.manager.incidents()))
            except (ValueError, KeyError, TypeError) as exc:
                # Starting empty re-raises what is active; refusing to start would blind the
                # city. Loud, and the old row is overwritten at the first snapshot.
                logger.error("saved rule state unusable (%s): starting with empty rule state", exc)
                self.engine = RuleEngine(self.engine.rules, self.registry, self.maintenance)
                self.manager = IncidentManager(self.registry, self.manager.patterns, self.maintenance)
                self.seqs = SeqTracker(window=self.settings.ops_seq_window)
                self._gw = {}
        self._open = {i.id for i in self.manager.incidents() if i.state != "resolved"}
        self._restored = True
        return True

    def _reconcile(self) -> None:
        """Actions people took while the service was away (the API stores them even then)."""
        try:
            stored = {i.id: i for i in self.repo.open_incidents()}
        except RepositoryError as exc:
            logger.warning("incident states not reconciled at start: %s", exc)
            return
        for inc in self.manager.incidents():
            if inc.state == "resolved":
                continue
            row = stored.get(inc.id)
            try:
                if row is None:
                    detail = self.repo.get_incident(inc.id)
                    if detail is not None and detail.incident.state == "resolved":
                        at = detail.incident.resolved_at or detail.incident.updated_at
                        self.manager.resolve(inc.id, "api", at, "resolved while the service was away")
                elif row.state == "acknowledged" and inc.state == "open":
                    self.manager.acknowledge(inc.id, "api", row.acknowledged_at or row.updated_at)
            except (UnknownIncident, InvalidTransition, RepositoryError) as exc:
                logger.info("incident %s not reconciled: %s", inc.id, exc)

    def _load_maintenance(self) -> None:
        try:
            rows = self.repo.list_maintenance(None, None)
        except RepositoryError as exc:
            logger.debug("maintenance windows not refreshed: %s", exc)
            return
        current = {w.id for w in self.maintenance.windows()}
        fresh = {r.id for r in rows}
        for wid in current - fresh:
            self.maintenance.remove(wid)
        for r in rows:
            self.maintenance.add(MaintenanceWindow(r.id, r.scope, r.target, r.starts_at, r.ends_at,
                                                   r.set_by, r.reason))
