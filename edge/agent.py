"""The edge agent: poll the driver, seal batches into the outbox, publish, apply watermarks.

One thread owns all state (driver, batcher, outbox, sender, counters). It sleeps on a queue
until the next deadline or the next event from the publisher (connected, PUBACK, watermark
...), so it never polls with sleep (docs/style.md rule 7). Deadlines come from two time bases
(see :mod:`edge.clock`): the clock for polling and batch age, ``monotonic`` for the network.

Durability order: readings -> batch sealed with its seq -> committed to the outbox (fsync)
-> published. Readings the driver handed over but not yet sealed (at most one flush
interval) live in memory; a SIGTERM seals them, a power cut loses them, exactly as if it
had struck before they were read.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta

from contract.codec import encode
from contract.models import GatewayState, Status
from edge.batching import Batcher, seal
from edge.clock import Clock
from edge.clockguard import ClockGuard
from edge.commands import CommandHandler
from edge.counters import Counters, EdgeStats
from edge.drivers.base import Driver, ErrorSource, LinkProbe
from edge.outbox import Outbox, OutboxStats
from edge.publisher import (
    BadAck,
    CommandReceived,
    Connected,
    ConnectFailed,
    Disconnected,
    Event,
    EventSink,
    Published,
    Publisher,
    WatermarkReceived,
)
from edge.sender import Sender
from edge.settings import AGENT, EdgeSettings

logger = logging.getLogger(__name__)

PublisherFactory = Callable[[EventSink, Callable[[], bytes]], Publisher]
"""Builds the publisher: (event sink, Last Will payload factory) -> Publisher."""

_MAX_WAIT_S = 60.0
# Command results waiting for a connection. Commands arrive only while connected, so this
# holds the few answered just as the link dropped; past it the oldest is dropped (counted).
_MAX_PENDING_RESULTS = 256


class Agent:
    def __init__(
        self,
        *,
        settings: EdgeSettings,
        gateway: str,
        clock: Clock,
        driver: Driver,
        outbox: Outbox,
        connect: PublisherFactory,
        link: LinkProbe | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        on_stats: Callable[[EdgeStats], None] | None = None,
        commands: CommandHandler | None = None,
        guard: ClockGuard | None = None,
    ) -> None:
        self.gateway = gateway
        self._settings = settings
        self._clock = clock
        self._driver = driver
        self._link = link
        self._outbox = outbox
        self._connect = connect
        self._monotonic = monotonic
        self._on_stats = on_stats
        self._commands = commands
        self._guard = guard
        self._guard_dropped = 0
        self._results: deque[bytes] = deque()
        self._publisher: Publisher | None = None  # while run() is connected
        self._batcher = Batcher(max_readings=settings.edge_batch_max_readings,
                                flush_interval=timedelta(milliseconds=settings.edge_flush_interval_ms))
        self._poll_interval = timedelta(milliseconds=settings.edge_poll_interval_ms)
        self.counters = Counters()
        self._events: queue.SimpleQueue[Event | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._link_up: bool | None = None
        self._next_drop_warning = 0.0
        self._cond = threading.Condition()
        self._snapshot = EdgeStats(gateway=gateway, at=clock.now(), connected=False, link_up=False,
                                   watermark=outbox.acked_through, inflight=0, counters=Counters(),
                                   outbox=outbox.stats())

    # -- control (any thread) -------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the agent to stop; safe from a signal handler (SimpleQueue.put is reentrant)."""
        self._stop.set()
        self._events.put(None)

    def snapshot(self) -> EdgeStats:
        return self._snapshot

    def wait_until(self, predicate: Callable[[EdgeStats], bool], timeout_s: float) -> EdgeStats:
        """Block until ``predicate(stats)`` holds after some step; TimeoutError at the deadline."""
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self._snapshot), timeout=timeout_s):
                raise TimeoutError(f"edge agent {self.gateway}: condition not met in {timeout_s} s; "
                                   f"last stats {self._snapshot.as_dict()}")
            return self._snapshot

    # -- the loop -------------------------------------------------------------------------------

    def run(self) -> EdgeStats:
        """Run until :meth:`stop`; then seal what is open, publish the offline status, disconnect."""
        s = self._settings
        with self._connect(self._events.put, self._will_payload) as publisher:
            self._publisher = publisher
            sender = Sender(self._outbox, publisher, self.counters, window=s.edge_window,
                            live_reserve=s.edge_live_reserve,
                            backlog_batches_per_s=s.edge_backlog_batches_per_s,
                            ack_timeout_s=s.edge_ack_timeout_s, ack_timeout_max_s=s.edge_ack_timeout_max_s)
            now = self._clock.now()
            self._next_poll = now
            self._next_status = self._monotonic() + s.edge_status_interval_s
            logger.info("edge agent %s started: last seq %d, %d batches in the outbox", self.gateway,
                        self._outbox.last_seq, self._outbox.stats().batches)
            try:
                while not self._stop.is_set():
                    self._step(publisher, sender)
                    self._wait(sender)
            finally:
                self._publisher = None
                self._shutdown(publisher, sender)
        return self._snapshot

    def _step(self, publisher: Publisher, sender: Sender) -> None:
        now = self._clock.now()
        # A clock set back (a gateway that booted in 1970 and got NTP, then lost it) must not
        # leave the next poll decades away.
        if now >= self._next_poll or self._next_poll - now > self._poll_interval:
            self._poll(now)
            self._next_poll = now + self._poll_interval
        up = True if self._link is None else self._link.link_up(now)
        if up != self._link_up:
            if self._link_up is not None:
                logger.info("link %s", "up" if up else "down: reading into the outbox")
            self.counters.link_downs += not up
            self._link_up = up
            publisher.set_link(up)
        if self._batcher.due(now):
            self._seal(now, sender)
        mono = self._monotonic()
        sender.check_ack_timeout(mono)
        sender.pump(mono)
        status_due = mono >= self._next_status
        if status_due:
            self._next_status = mono + self._settings.edge_status_interval_s
            self._publish_status(publisher, "online", now)
        self._publish_snapshot(now, sender)
        if status_due and self._on_stats is not None:
            self._on_stats(self._snapshot)

    def _wait(self, sender: Sender) -> None:
        mono = self._monotonic()
        waits = [self._clock.real_seconds_until(self._next_poll), self._next_status - mono, _MAX_WAIT_S]
        if (deadline := self._batcher.deadline) is not None:
            waits.append(self._clock.real_seconds_until(deadline))
        if (net := sender.next_deadline(mono)) is not None:
            waits.append(net - mono)
        timeout = max(0.0, min(waits))
        try:
            event = self._events.get(timeout=timeout) if timeout > 0 else self._events.get_nowait()
        except queue.Empty:
            return
        # Everything queued is handled before the next step; the queue cannot outgrow that
        # (PUBACKs are bounded by the window, watermarks by the batches sent). Watermarks
        # come one per ingest commit and only the highest matters: applied once.
        watermark = 0
        while True:
            if isinstance(event, WatermarkReceived):
                watermark = max(watermark, event.seq)
            else:
                self._handle(event, sender)
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
        if watermark and sender.on_watermark(watermark, self._monotonic()):
            logger.debug("watermark %d: outbox now %d batches", watermark, self._outbox.stats().batches)

    def _handle(self, event: Event | None, sender: Sender) -> None:
        mono = self._monotonic()
        match event:
            case Published(seq=seq, ok=ok):
                sender.on_published(seq, ok, mono)
            case Connected():
                self.counters.connects += 1
                self.counters.reconnects += self.counters.connects > 1
                sender.on_connected(mono)
                # Announce ourselves at once on every connection, not at the next period.
                self._next_status = mono
                self._flush_results()
            case Disconnected():
                self.counters.disconnects += 1
                sender.on_disconnected()
            case ConnectFailed():
                self.counters.connect_failures += 1
            case BadAck():
                self.counters.bad_acks += 1
            case CommandReceived(payload=payload):
                self._command(payload)
            case None:
                pass

    def _command(self, payload: bytes) -> None:
        self.counters.commands_received += 1
        if self._commands is None:
            logger.warning("a command arrived but this agent has no command handler")
            self.counters.commands_rejected += 1
            return
        outcome = self._commands.handle(payload, self._clock.now())
        if outcome.duplicate:
            self.counters.commands_duplicate += 1
        elif outcome.applied:
            self.counters.commands_applied += 1
        else:
            self.counters.commands_rejected += 1
        if len(self._results) >= _MAX_PENDING_RESULTS:
            self._results.popleft()
            self.counters.command_results_dropped += 1
        self._results.append(encode(outcome.result))
        self._flush_results()

    def _flush_results(self) -> None:
        publisher = self._publisher
        while self._results and publisher is not None and publisher.publish_result(self._results[0]):
            self._results.popleft()
            self.counters.command_results_published += 1

    def _poll(self, now: datetime) -> None:
        try:
            readings = self._driver.poll(now)
        except Exception:
            # The loop's top for the driver: a failing sensor must not stop the agent.
            self.counters.driver_errors += 1
            logger.exception("driver poll failed")
            return
        finally:
            if isinstance(self._driver, ErrorSource):
                self.counters.driver_errors += self._driver.take_errors()
        self.counters.readings += len(readings)
        if self._guard is not None:
            readings = self._guard.admit(readings, now)
            self.counters.clock_untrusted_polls = self._guard.untrusted_polls
            self.counters.readings_restamped = self._guard.restamped
            self.counters.readings_dropped += self._guard.dropped - self._guard_dropped
            self._guard_dropped = self._guard.dropped
            if not readings:
                return
        self._batcher.add(readings, now)

    def _seal(self, now: datetime, sender: Sender, *, force: bool = False) -> None:
        chunks = self._batcher.cut(now, force=force)
        if not chunks:
            return
        batches = seal(self.gateway, self._outbox.last_seq + 1, now, chunks,
                       max_payload_bytes=self._settings.edge_max_payload_bytes)
        dropped = self._outbox.append(batches)
        self.counters.batches_created += len(batches)
        self.counters.batches_split += len(batches) - len(chunks)
        if logger.isEnabledFor(logging.DEBUG):
            for b in batches:
                logger.debug("sealed batch seq=%d readings=%d bytes=%d", b.seq, b.readings, len(b.payload))
        if dropped.dropped_batches:
            sender.on_dropped(dropped.dropped_through)
            self.counters.batches_dropped += dropped.dropped_batches
            self.counters.readings_dropped += dropped.dropped_readings
            # Once the cap is reached every new batch drops an old one: warn once a period.
            mono = self._monotonic()
            if mono >= self._next_drop_warning:
                self._next_drop_warning = mono + self._settings.edge_status_interval_s
                logger.warning("outbox over its cap of %d bytes: dropping the oldest batches; "
                               "%d dropped so far, through seq %d", self._settings.edge_outbox_max_bytes,
                               self._outbox.stats().dropped_batches, dropped.dropped_through)

    # -- status -----------------------------------------------------------------------------------

    def _status(self, state: GatewayState, now: datetime, o: OutboxStats) -> Status:
        return Status(v=1, gateway=self.gateway, state=state, ts=now, agent=AGENT,
                      outbox_batches=o.batches, outbox_oldest=o.oldest,
                      dropped_batches=o.dropped_batches, dropped_through=o.dropped_through,
                      last_seq=o.last_seq, counters=dataclasses.asdict(self.counters))

    def _publish_status(self, publisher: Publisher, state: GatewayState, now: datetime) -> None:
        if publisher.publish_status(encode(self._status(state, now, self._outbox.stats()))):
            self.counters.status_published += 1

    def _will_payload(self) -> bytes:
        """The Last Will, built on the publisher's thread from the latest snapshot (the
        outbox itself belongs to the agent's thread)."""
        return encode(self._status("offline", self._clock.now(), self._snapshot.outbox))

    def _publish_snapshot(self, now: datetime, sender: Sender) -> None:
        snap = EdgeStats(gateway=self.gateway, at=now, connected=sender.connected,
                         link_up=bool(self._link_up), watermark=sender.watermark, inflight=sender.inflight,
                         counters=dataclasses.replace(self.counters), outbox=self._outbox.stats())
        with self._cond:
            self._snapshot = snap
            self._cond.notify_all()

    def _shutdown(self, publisher: Publisher, sender: Sender) -> None:
        now = self._clock.now()
        try:
            self._poll(now)
            self._seal(now, sender, force=True)
            sender.pump(self._monotonic())
        finally:
            # Even if the last batch could not be stored: say offline, disconnect.
            final = encode(self._status("offline", now, self._outbox.stats()))
            acked = publisher.close(final_status=final, timeout_s=self._settings.edge_shutdown_timeout_s)
            sender.on_disconnected()
        self._publish_snapshot(now, sender)
        logger.info("edge agent %s stopped: last seq %d, %d batches in the outbox, offline status %s",
                    self.gateway, self._outbox.last_seq, self._outbox.stats().batches,
                    "acknowledged" if acked else "left to the Last Will")
