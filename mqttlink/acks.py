"""Deliveries handled one at a time in arrival order and acknowledged only once handled (the
command link's results, ops_center/commands/link.py): one that cannot be stored yet stays
unacknowledged and is retried, so a store outage loses nothing (docs/reliability.md)."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_MIN_S = 0.5
RETRY_MAX_S = 10.0
_STOP_JOIN_S = 15.0


@dataclass(frozen=True, slots=True)
class Delivery:
    """One PUBLISH as it arrived: what the worker needs to handle it, and to PUBACK it on the
    connection (``generation``) that delivered it."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int


Handler = Callable[[Delivery], str | None]  # None: handled, ack it; else why to retry it


class InOrderAcks:
    """One worker thread that handles deliveries one at a time, in arrival order, and acks each
    once it is handled (MQTT 5 §4.6: PUBACKs in the order the PUBLISHes arrived).

    ``handle`` returns None when the delivery is done (recorded, or needing no recording) and
    a reason when it must be tried again (the store is down): it then stays at the head, unacked,
    and is retried after ``retry_min_s`` doubling to ``retry_max_s``; the ones behind it wait.
    ``ack`` sends the PUBACK (and refuses one for an earlier connection). :meth:`new_generation`
    (a connection came or went) drops the deliveries of earlier connections: the broker
    redelivers them on the next one. :meth:`put` never blocks (paho's network thread calls
    it); the broker's Receive Maximum bounds the queue.
    """

    def __init__(self, handle: Handler, ack: Callable[[Delivery], object], *,
                 retry_min_s: float = RETRY_MIN_S, retry_max_s: float = RETRY_MAX_S,
                 name: str = "command-results") -> None:
        self._handle = handle
        self._ack = ack
        self._retry_min_s = retry_min_s
        self._retry_max_s = retry_max_s
        self._name = name
        self._queue: deque[Delivery] = deque()
        self._cond = threading.Condition()
        self._generation = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.retries = 0  # failed attempts, all deliveries (total)
        self.errors = 0  # handlers that raised (a bug): logged, acked, not retried

    @property
    def pending(self) -> int:
        """Deliveries received and not yet acked (the one being handled included)."""
        with self._cond:
            return len(self._queue)

    def start(self) -> None:
        with self._cond:
            self._stopping = False
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = _STOP_JOIN_S) -> None:
        """Finish the delivery being handled (a store call in progress, its ack), then stop;
        what is still queued stays unacknowledged, for the broker to redeliver."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout_s)
            if thread.is_alive():
                logger.warning("%s worker still busy after %.0f s; leaving it", self._name, timeout_s)

    def put(self, d: Delivery) -> None:
        with self._cond:
            if d.generation != self._generation:
                return  # its connection is gone: the broker sends it again on the next one
            self._queue.append(d)
            self._cond.notify_all()

    def new_generation(self, generation: int) -> None:
        """A connection came or went: drop what earlier connections delivered (the broker sends
        it again on the new one) and wake a worker waiting to retry one of them."""
        with self._cond:
            self._generation = generation
            kept = [d for d in self._queue if d.generation == generation]
            dropped = len(self._queue) - len(kept)
            self._queue = deque(kept)
            self._cond.notify_all()
        if dropped:
            logger.info("%s: %d unacknowledged deliveries left to the broker's redelivery",
                        self._name, dropped)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopping or bool(self._queue))
                if self._stopping:
                    return
                d = self._queue[0]
            done = self._work(d)
            if done:
                self._ack(d)
            with self._cond:
                # Not done: stopping (it stays, unacked) or of an earlier connection (dropped).
                if (done or d.generation != self._generation) and self._queue and self._queue[0] is d:
                    self._queue.popleft()

    def _work(self, d: Delivery) -> bool:
        """Handle ``d`` until it is done (True) or abandoned: stopping, or its connection is gone."""
        delay = self._retry_min_s
        attempts = 0
        started = time.monotonic()
        while True:
            try:
                why = self._handle(d)
            except Exception:  # the worker's top: a bug must not stop the results behind it
                self.errors += 1
                logger.exception("handling the delivery %d on %s failed; acknowledged, not retried",
                                 d.mid, d.topic)
                return True
            if why is None:
                if attempts:
                    logger.info("%s: handled the delivery on %s after %d failed attempts (%.1f s)",
                                self._name, d.topic, attempts, time.monotonic() - started)
                return True
            attempts += 1
            self.retries += 1
            if attempts == 1:
                logger.warning("%s; kept unacknowledged, retrying (every %.1f s at most)", why,
                               self._retry_max_s)
            else:
                logger.debug("attempt %d failed: %s; next in %.1f s", attempts, why, delay)
            with self._cond:
                self._cond.wait_for(lambda: self._stopping or d.generation != self._generation, delay)
                if self._stopping or d.generation != self._generation:
                    logger.info("%s: the delivery on %s left unacknowledged after %d failed attempts: "
                                "the broker redelivers it", self._name, d.topic, attempts)
                    return False
            delay = min(delay * 2, self._retry_max_s)


def hand_over(q: queue.Queue[T], item: T, stopping: threading.Event, poll_s: float = 0.5) -> bool:
    """Put a delivered message into its owner's bounded queue from paho's network thread.

    The broker never has more than the Receive Maximum unacknowledged messages out to us, so
    this blocks only against a broker that ignores it; blocking the network thread is then the
    backpressure (TCP fills). When ``stopping`` is set the message is left unacknowledged (the
    broker redelivers it to the next session) and False is returned."""
    while not stopping.is_set():
        try:
            q.put(item, timeout=poll_s)
            return True
        except queue.Full:
            continue
    return False
