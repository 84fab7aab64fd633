"""Which stored batches to publish, and when: the sending policy of the edge agent.

Pure state machine over the outbox and the publisher port; the network time
(``time.monotonic``) is passed in, so unit tests drive it with fakes.

**Two regions.** At every (re)connect, everything in the outbox that the watermark does not
cover becomes the *backlog*; batches sealed after it are *live*. Live batches go first, as
soon as the window has room. The backlog is drained oldest first (so the watermark and the
disk space advance) through a **token bucket** of ``backlog_batches_per_s``, and may hold at
most ``window - live_reserve`` of the in-flight window. The bucket protects the thin uplink
and the ingest when a gateway — or a whole ward — comes back after hours without signal;
the reserved slots guarantee that a live batch never queues behind the backlog, so fresh
readings (an alarm) arrive within the flush interval even during a long drain.

**Ack timeout.** A PUBACK says only that the broker took the message; it may still be lost
(broker crash before its snapshot, a full subscriber queue, a subscriber that reconnected
without a session). So when PUBACKed batches exist above the watermark and the watermark
has not advanced for ``ack_timeout_s``, everything sent and not covered is sent again
("go back N": the ingest de-duplicates, and after the first missing batch arrives the
watermark usually jumps over the rest, which the cursor then skips). The timeout doubles on
every round without progress, up to ``ack_timeout_max_s``, so an ingest that is down for
hours costs a bounded trickle of re-sends.
"""

from __future__ import annotations

import heapq
import logging

from edge.batching import SealedBatch
from edge.counters import Counters
from edge.outbox import Outbox
from edge.publisher import Publisher

logger = logging.getLogger(__name__)


class Sender:
    def __init__(
        self,
        outbox: Outbox,
        publisher: Publisher,
        counters: Counters,
        *,
        window: int,
        live_reserve: int,
        backlog_batches_per_s: float,
        ack_timeout_s: float,
        ack_timeout_max_s: float,
    ) -> None:
        if not 0 <= live_reserve < window:
            raise ValueError("live_reserve must be in [0, window)")
        if backlog_batches_per_s <= 0:
            raise ValueError("backlog_batches_per_s must be positive")
        self._outbox = outbox
        self._publisher = publisher
        self._counters = counters
        self._window = window
        self._backlog_share = window - live_reserve
        self._rate = backlog_batches_per_s
        self._burst = float(self._backlog_share)
        self._ack_timeout_base = ack_timeout_s
        self._ack_timeout_max = max(ack_timeout_s, ack_timeout_max_s)

        self.connected = False
        self.watermark = outbox.acked_through
        self._live_cursor = self._backlog_cursor = self._backlog_end = outbox.last_seq
        self._inflight: dict[int, bool] = {}  # seq -> from the backlog
        self._backlog_inflight = 0
        self._tokens = self._burst
        self._token_t = 0.0
        self._ack_timeout = ack_timeout_s
        self._progress_deadline: float | None = None
        self._max_pubacked = self.watermark  # highest seq the broker has answered
        # Seqs this process has sent and the watermark does not cover yet: tells a re-send
        # from a first send. Bounded by the outbox; pruned through the heap.
        self._sent: set[int] = set()
        self._sent_heap: list[int] = []
        self._warned_ahead = False

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    @property
    def backlog_pending(self) -> bool:
        return self._backlog_cursor < self._backlog_end

    # -- events ------------------------------------------------------------------------------

    def on_connected(self, now: float) -> None:
        self.connected = True
        self._inflight.clear()
        self._backlog_inflight = 0
        last = self._outbox.last_seq
        self._backlog_cursor, self._backlog_end, self._live_cursor = self.watermark, last, last
        self._tokens, self._token_t = self._burst, now
        self._progress_deadline = None
        self._ack_timeout = self._ack_timeout_base

    def on_disconnected(self) -> None:
        self.connected = False
        self._inflight.clear()
        self._backlog_inflight = 0
        self._progress_deadline = None

    def on_published(self, seq: int, ok: bool, now: float) -> None:
        if seq not in self._inflight:
            return
        if self._inflight.pop(seq):
            self._backlog_inflight -= 1
        if ok:
            self._counters.batches_published += 1
        else:
            self._counters.batches_refused += 1  # kept in the outbox; the ack timeout re-sends it
        if seq > self.watermark:
            self._max_pubacked = max(self._max_pubacked, seq)
            if self._progress_deadline is None:
                self._progress_deadline = now + self._ack_timeout

    def on_dropped(self, through: int) -> None:
        """The outbox cap dropped every batch up to ``through``: forget them."""
        self._forget_through(through)

    def _forget_through(self, seq: int) -> None:
        while self._sent_heap and self._sent_heap[0] <= seq:
            self._sent.discard(heapq.heappop(self._sent_heap))

    def on_watermark(self, seq: int, now: float) -> int:
        """Apply the ingest's watermark: delete what it covers. Returns batches deleted."""
        last = self._outbox.last_seq
        if seq > last and not self._warned_ahead:
            # A watermark from an earlier life of this gateway id (outbox lost or replaced):
            # the platform will treat our seqs up to it as duplicates.
            logger.error("ack watermark %d is ahead of our last seq %d: was the outbox replaced?",
                         seq, last)
            self._warned_ahead = True
        mark = min(seq, last)
        if mark <= self.watermark:
            return 0
        removed = self._outbox.ack(mark)
        self._counters.batches_acked += removed
        self.watermark = mark
        self._forget_through(mark)
        self._backlog_cursor = max(self._backlog_cursor, mark)
        self._live_cursor = max(self._live_cursor, mark)
        self._ack_timeout = self._ack_timeout_base
        self._progress_deadline = now + self._ack_timeout if self._max_pubacked > mark else None
        return removed

    # -- sending -------------------------------------------------------------------------------

    def pump(self, now: float) -> None:
        """Publish what the window, the live priority and the token bucket allow now."""
        if not self.connected:
            return
        self._tokens = min(self._burst, self._tokens + (now - self._token_t) * self._rate)
        self._token_t = now
        last = self._outbox.last_seq
        while self._live_cursor < last and self._room() > 0:
            batches = self._outbox.after(self._live_cursor, through=last, limit=self._room())
            if not batches:
                self._live_cursor = last
                break
            for b in batches:
                if b.seq not in self._inflight and not self._send(b, backlog=False):
                    return
                self._live_cursor = b.seq
        while self._backlog_cursor < self._backlog_end and self._backlog_room() > 0:
            batches = self._outbox.after(self._backlog_cursor, through=self._backlog_end,
                                         limit=self._backlog_room())
            if not batches:
                self._backlog_cursor = self._backlog_end
                break
            for b in batches:
                if b.seq not in self._inflight:
                    if not self._send(b, backlog=True):
                        return
                    self._tokens -= 1
                self._backlog_cursor = b.seq

    def _room(self) -> int:
        return self._window - len(self._inflight)

    def _backlog_room(self) -> int:
        return min(self._room(), self._backlog_share - self._backlog_inflight, int(self._tokens))

    def _send(self, batch: SealedBatch, *, backlog: bool) -> bool:
        if not self._publisher.publish_batch(batch.seq, batch.payload):
            return False
        self._inflight[batch.seq] = backlog
        self._backlog_inflight += backlog
        self._counters.batches_sent += 1
        if batch.seq in self._sent:
            self._counters.batches_resent += 1
        else:
            self._sent.add(batch.seq)
            heapq.heappush(self._sent_heap, batch.seq)
        return True

    def check_ack_timeout(self, now: float) -> None:
        if self._progress_deadline is None or now < self._progress_deadline:
            return
        logger.warning("ack watermark stuck at %d for %.1f s: re-sending %d..%d",
                       self.watermark, self._ack_timeout, self.watermark + 1, self._live_cursor)
        self._counters.resend_rounds += 1
        self._backlog_cursor = self.watermark
        self._backlog_end = max(self._backlog_end, self._live_cursor)
        self._ack_timeout = min(self._ack_timeout * 2, self._ack_timeout_max)
        self._progress_deadline = None

    def next_deadline(self, now: float) -> float | None:
        """The next monotonic time this sender needs a call without any event."""
        deadlines: list[float] = []
        if self._progress_deadline is not None:
            deadlines.append(self._progress_deadline)
        if (self.connected and self.backlog_pending and self._tokens < 1
                and self._room() > 0 and self._backlog_inflight < self._backlog_share):
            deadlines.append(now + (1 - self._tokens) / self._rate)
        return min(deadlines) if deadlines else None
