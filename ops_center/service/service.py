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
manager through :meth:`OpsService.on_action`, applied by the worker thread like everything else:
the manager adopts the lifecycle the store holds, so the two never disagree.

The parts: this module (start, stop, health, the worker's loop); ``inbound`` (one step: decode,
rules, incidents, record; the tick); ``people`` (people's actions); ``rulestate`` (snapshot,
restore, maintenance windows); ``persist`` (the store and the feed); ``model`` (counters,
progress, queue items).
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType

from prometheus_client import CollectorRegistry

from contract.bounds import safe_text
from contract.registry import Registry
from mqttlink.acks import hand_over
from ops_center.adapters.records import IncidentRecord
from ops_center.adapters.repository import OpsRepository
from ops_center.domain.correlation import PatternSet
from ops_center.domain.engine import RuleEngine
from ops_center.domain.incidents import IncidentManager
from ops_center.domain.maintenance import MaintenanceCalendar
from ops_center.domain.rules import RuleSet
from ops_center.feed import Feed, FeedEvent
from ops_center.service.actions import HumanAction
from ops_center.service.inbound import InboundHandling
from ops_center.service.model import (
    Command,
    Control,
    GatewayClock,
    Item,
    ServiceCounters,
    ServiceProgress,
    register_service_metrics,
)
from ops_center.service.mqtt import Inbound, OpsMqttLink
from ops_center.service.notifier import Notifier, build_notifier
from ops_center.service.people import PeopleActions
from ops_center.service.persist import ChangeWriter
from ops_center.service.rulestate import STATE_VERSION, RuleStateKeeping
from ops_center.service.seqs import SeqTracker
from ops_center.service.settings import OpsServiceSettings

__all__ = ["STATE_VERSION", "OpsService", "ServiceCounters", "ServiceProgress"]

logger = logging.getLogger(__name__)

_DRAIN_MAX = 200  # messages handled per step before persisting (bounds the work between ticks)
_STOP_GRACE_S = 10.0  # a stopping service keeps retrying a database that is down this long


def _wall() -> datetime:
    return datetime.now(UTC)


class OpsService(InboundHandling, PeopleActions, RuleStateKeeping):
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
            repo.incidents, registry, feed, clock=clock,
            planner=self.notifier.planner if self.notifier is not None else None,
            on_notifications=self.notifier.sender.wake if self.notifier is not None else None)
        self.counters = ServiceCounters()
        self._gw: dict[str, GatewayClock] = {}
        self._status_state: dict[str, str] = {}
        self._pending: list[Inbound] = []
        self._queue: queue.Queue[Item] = queue.Queue(maxsize=settings.ops_receive_maximum + 64)
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
        # People's actions adopted while the store was down: adopted again as stored.
        self._deferred: dict[str, IncidentRecord] = {}
        # People's actions that found the queue full: taken by the worker after its current work.
        self._overflow: dict[str, tuple[HumanAction, IncidentRecord]] = {}
        self._overflow_lock = threading.Lock()
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

    def _put_control(self, item: Control) -> None:
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
        register_service_metrics(registry, self.counters, self.writer.stats)

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
    def _on_maintenance_event(self, _event: FeedEvent) -> None:
        """A window was set or ended through the API of this process: re-read them before the
        next message (the publisher's thread: only enqueue, never wait)."""
        try:
            self._queue.put_nowait(Command(self._load_maintenance))
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
            self._catch_up()  # people's actions not adopted as stored yet
            now = mono()
            deadline = min(next_tick, next_snapshot if self._pending else next_tick)
            items = self._take(max(0.0, deadline - now))
            control: Control | None = None
            messages: list[Inbound] = []
            for item in items:
                if isinstance(item, Inbound):
                    messages.append(item)
                elif isinstance(item, Command):
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

    def _take(self, timeout_s: float) -> list[Item]:
        q = self._queue
        try:
            first = q.get(timeout=timeout_s) if timeout_s > 0 else q.get_nowait()
        except queue.Empty:
            return []
        items: list[Item] = [first]
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
