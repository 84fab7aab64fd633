"""Which telemetry batches the service has already evaluated: QoS 1 redelivery is a no-op.

Per gateway, the highest contiguous seq seen and the seqs seen above it (at most ``window``;
past that the watermark jumps to the lowest remembered seq, treating the gap below it as
lost, which the ingest reports as a data-completeness event anyway). A batch whose seq is
known is a duplicate only if it is not newer than the newest batch seen from that gateway:
a gateway whose outbox was wiped (a reinstalled agent starting again at seq 1) sends
"old" seqs with new ``sent_at``, and those are a restart of its sequence, not duplicates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _Gateway:
    mark: int = 0
    above: set[int] = field(default_factory=set)
    newest_sent: float = float("-inf")


class SeqTracker:
    """Not thread-safe: owned by the service's worker thread."""

    def __init__(self, *, window: int = 10_000) -> None:
        self.window = window
        self._gw: dict[str, _Gateway] = {}
        self.resets = 0

    def seen(self, gateway: str, seq: int, sent_at: float) -> bool:
        g = self._gw.get(gateway)
        if g is None:
            return False
        known = seq <= g.mark or seq in g.above
        if known and sent_at > g.newest_sent:
            self.resets += 1
            logger.warning("gateway %s restarted its sequence at seq %d (was through %d): "
                           "treating it as new", gateway, seq, g.mark)
            self._gw[gateway] = _Gateway(newest_sent=g.newest_sent)
            return False
        return known

    def mark(self, gateway: str, seq: int, sent_at: float) -> None:
        g = self._gw.setdefault(gateway, _Gateway())
        g.newest_sent = max(g.newest_sent, sent_at)
        if seq <= g.mark:
            return
        g.above.add(seq)
        while g.mark + 1 in g.above:
            g.mark += 1
            g.above.discard(g.mark)
        if len(g.above) > self.window:
            g.mark = min(g.above)
            g.above.discard(g.mark)
            while g.mark + 1 in g.above:
                g.mark += 1
                g.above.discard(g.mark)

    def highest(self, gateway: str) -> int:
        """The highest seq seen from ``gateway`` (0 when none)."""
        g = self._gw.get(gateway)
        if g is None:
            return 0
        return max(g.above) if g.above else g.mark

    def through(self, gateway: str) -> int:
        """Every seq up to this one has been seen."""
        g = self._gw.get(gateway)
        return 0 if g is None else g.mark

    def snapshot(self) -> dict[str, Any]:
        return {gw: [g.mark, sorted(g.above), g.newest_sent if g.newest_sent > float("-inf") else None]
                for gw, g in self._gw.items()}

    def restore(self, data: dict[str, Any]) -> None:
        self._gw = {}
        for gw, (mark, above, newest) in data.items():
            self._gw[gw] = _Gateway(int(mark), {int(s) for s in above},
                                    float("-inf") if newest is None else float(newest))
