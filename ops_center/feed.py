"""The internal change feed: the ops service publishes what changed (alerts, incidents,
gateway status, KPIs) and every live-stream client reads what its scope may see.

An event's data carries records, not rendered API objects: the ops service and the routes put
the ``AlertRecord``, ``IncidentRecord`` or ``GatewayStatusRecord`` they wrote in it (with a few
plain fields: action, by, notify...), and the stream route renders them with the API's schemas
(ops_center/api/render.py). The feed imports nothing of the ops center.

Thread-safe on the publishing side (the ops service publishes from its worker thread, the
API from the event loop or the thread pool); each subscriber belongs to one asyncio loop.

Bounded everywhere (docs/reliability.md promise 5):
- a ring buffer of the last ``ring_size`` events serves ``Last-Event-ID`` resumes; a client
  that asks for an id older than the ring (or from before a restart) is told to ``resync``;
- each subscriber has a queue of at most ``queue_max`` events. A client that falls that far
  behind is dropped (its stream ends; it reconnects and resumes from the ring), so a slow
  client never blocks the publisher or the other clients. Drops are counted.

Events are filtered by the subscriber's ``accept(site)`` at publish time, so another site's
traffic can neither reach nor overflow a client's queue.

Listeners (:meth:`Feed.listen`) are in-process components that react to an event kind (the
ops service re-reads maintenance windows on a ``maintenance`` event); they are called on the
publisher's thread and must only hand the event on (a queue), never block.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

logger = logging.getLogger(__name__)

EventKind = Literal["alert", "incident", "gateway", "kpi", "security", "maintenance", "command"]
EVENT_KINDS: tuple[EventKind, ...] = (
    "alert", "incident", "gateway", "kpi", "security", "maintenance", "command",
)

Accept = Callable[[str | None], bool]
Listener = Callable[["FeedEvent"], None]


@dataclass(frozen=True, slots=True)
class FeedEvent:
    """One change. ``site`` None: not tied to a site (only global scopes see it). ``data``:
    plain values and records (rendered for clients by ops_center/api/render.py)."""

    id: str
    seq: int
    kind: EventKind
    site: str | None
    data: Mapping[str, object]
    at: datetime


@dataclass(slots=True)
class FeedStats:
    published: int = 0
    subscribers: int = 0
    dropped_clients: int = 0


class Subscription:
    """One live-stream client's view of the feed. Created by :meth:`Feed.subscribe` inside
    the client's event loop; read with :meth:`next_batch`; closed with :meth:`close`."""

    def __init__(self, feed: Feed, accept: Accept, queue_max: int) -> None:
        self._feed = feed
        self.accept = accept
        self.queue_max = queue_max
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._items: deque[FeedEvent] = deque()
        self.dropped = False
        self.closed = False

    # Called by Feed.publish under the feed's lock, from any thread.
    def _offer(self, event: FeedEvent) -> bool:
        """Queue ``event``; False when the queue is full (the caller drops this client)."""
        if len(self._items) >= self.queue_max:
            self.dropped = True
            self._notify()
            return False
        self._items.append(event)
        self._notify()
        return True

    def _notify(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self._wake.set)
        except RuntimeError:  # the client's loop is closed: it is gone
            self.closed = True

    async def next_batch(self, timeout_s: float) -> list[FeedEvent] | None:
        """The events queued since the last call, waiting up to ``timeout_s`` for one.
        ``[]`` on timeout (time for a keep-alive); None once the client was dropped."""
        deadline = self._loop.time() + timeout_s
        while True:
            with self._feed._lock:
                items = list(self._items)
                self._items.clear()
                self._wake.clear()
                dropped = self.dropped
            if dropped:
                return None
            if items:
                return items
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                return []
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                return []

    def close(self) -> None:
        self._feed._unsubscribe(self)
        self.closed = True


@dataclass(slots=True)
class _Replay:
    events: list[FeedEvent] = field(default_factory=list)
    resync: bool = False


class Feed:
    def __init__(
        self, *, ring_size: int = 2048, queue_max: int = 256, clock: Callable[[], datetime] | None = None
    ) -> None:
        self.ring_size = ring_size
        self.queue_max = queue_max
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self._ring: deque[FeedEvent] = deque(maxlen=ring_size)
        self._subs: set[Subscription] = set()
        # Ids are "<boot>-<seq>": a Last-Event-ID from another process run is recognised
        # as such (resync) instead of silently matching an unrelated event.
        self.boot = secrets.token_hex(4)
        self._seq = itertools.count(1)
        self._listeners: dict[int, tuple[frozenset[EventKind], Listener]] = {}
        self._listener_ids = itertools.count(1)
        self.stats = FeedStats()

    def publish(self, kind: EventKind, site: str | None, data: Mapping[str, object]) -> FeedEvent:
        """Record and fan out one event. Never blocks on a client."""
        return self._publish(kind, site, data, None)

    def _publish(self, kind: EventKind, site: str | None, data: Mapping[str, object],
                 seq: int | None) -> FeedEvent:
        # ``seq`` given: the event's number comes from elsewhere (the store's change feed,
        # ops_center/service/change_feed.py), increasing like the feed's own.
        with self._lock:
            seq = next(self._seq) if seq is None else seq
            event = FeedEvent(f"{self.boot}-{seq}", seq, kind, site, data, self._clock())
            self._ring.append(event)
            self.stats.published += 1
            gone: list[Subscription] = []
            for sub in self._subs:
                if sub.closed:
                    gone.append(sub)
                elif sub.accept(site) and not sub._offer(event):
                    gone.append(sub)
                    self.stats.dropped_clients += 1
                    logger.warning("live stream: dropped a slow client (queue of %d full)", sub.queue_max)
            for sub in gone:
                self._subs.discard(sub)
            self.stats.subscribers = len(self._subs)
            listeners = [fn for kinds, fn in self._listeners.values() if kind in kinds]
        for fn in listeners:  # outside the lock: a listener may publish or unlisten
            try:
                fn(event)
            except Exception:  # a listener's bug must not fail the publisher's change
                logger.exception("feed listener failed on a %s event", kind)
        return event

    def listen(self, kinds: tuple[EventKind, ...], listener: Listener) -> Callable[[], None]:
        """Call ``listener(event)`` for every published event of ``kinds`` (on the
        publisher's thread, after the event is in the ring). Returns the way to stop."""
        with self._lock:
            key = next(self._listener_ids)
            self._listeners[key] = (frozenset(kinds), listener)

        def stop() -> None:
            with self._lock:
                self._listeners.pop(key, None)

        return stop

    def subscribe(self, accept: Accept, last_event_id: str | None = None) -> tuple[Subscription, _Replay]:
        """Register a client (call inside its event loop). With ``last_event_id``, also
        the events after it that ``accept`` lets through; ``resync`` when they are no
        longer all in the ring."""
        sub = Subscription(self, accept, self.queue_max)
        replay = _Replay()
        with self._lock:
            if last_event_id:
                replay = self._replay(last_event_id, accept)
            self._subs.add(sub)
            self.stats.subscribers = len(self._subs)
        return sub, replay

    def _replay(self, last_event_id: str, accept: Accept) -> _Replay:
        boot, _, seq_text = last_event_id.rpartition("-")
        # ASCII digits only: str.isdigit() is also true of "²" and "٣", which int() refuses.
        if boot != self.boot or not (seq_text.isascii() and seq_text.isdigit()):
            return _Replay(resync=True)
        seq = int(seq_text)
        oldest = self._ring[0].seq if self._ring else None
        if oldest is not None and seq < oldest - 1:
            return _Replay(resync=True)
        return _Replay([e for e in self._ring if e.seq > seq and accept(e.site)])

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)
            self.stats.subscribers = len(self._subs)

    def recent(self) -> list[FeedEvent]:
        with self._lock:
            return list(self._ring)
