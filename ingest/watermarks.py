"""Ack watermarks: per gateway, the highest CONTIGUOUS seq that is durably handled.

"Handled" (docs/contract.md, ack watermark) is: stored now, stored before (a duplicate),
dead-lettered with its seq known, or declared dropped by the gateway (``dropped_through``).
The edge deletes from its outbox only what the watermark covers, so the watermark must
never pass a seq that is not handled; being behind is always safe (the edge re-sends, the
store answers "duplicate", and the seq is handled again).

Memory is bounded: per gateway at most ``max_pending`` handled seqs above the watermark are
remembered. Past that, new ones are forgotten (counted in ``overflowed``) — conservative,
since a forgotten seq only keeps the watermark lower until it is seen again or found in the
store. Gateways are bounded by the registry (unknown gateways are never tracked).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol, runtime_checkable


@runtime_checkable
class HandledSeqSource(Protocol):
    """Optional store capability: which seqs above ``after`` the store has handled.

    Needed when several workers split one gateway's stream (shared subscription): each
    worker sees only some seqs, so a gap in its own view is closed from the store.
    """

    def handled_seqs(self, gateway: str, after: int, limit: int) -> Sequence[int]:
        """Sorted seqs > ``after`` of ``gateway`` in ``ingest_batches`` (stored or dead
        letter), at most ``limit``; seqs ≤ the gateway's recorded ``dropped_through`` count
        as handled too."""
        ...


class WatermarkTracker:
    """Not thread-safe: owned by the ingest's single writer thread."""

    def __init__(self, initial: Mapping[str, int] | None = None, *, max_pending: int = 10_000) -> None:
        self._marks: dict[str, int] = dict(initial or {})
        self._pending: dict[str, set[int]] = {}
        self._changed: set[str] = set()
        self._resent: set[str] = set()  # gateways that re-sent seqs their watermark covers
        self.max_pending = max_pending
        self.overflowed = 0

    def watermark(self, gateway: str) -> int:
        return self._marks.get(gateway, 0)

    def snapshot(self) -> dict[str, int]:
        return dict(self._marks)

    def pending(self, gateway: str) -> int:
        return len(self._pending.get(gateway, ()))

    def gaps(self) -> dict[str, int]:
        """Gateways with handled seqs above a missing one: gateway -> its watermark."""
        return {gw: self.watermark(gw) for gw, seqs in self._pending.items() if seqs}

    def mark(self, gateway: str, seq: int) -> None:
        """``seq`` of ``gateway`` is durably handled."""
        mark = self._marks.get(gateway, 0)
        if seq <= mark:
            # A re-send of what the watermark covers: the gateway has not seen its watermark
            # (a RabbitMQ node it reconnected to keeps no copy of the retained ack; a broker
            # lost its retained store). Publish it again; the edge stops re-sending then.
            if mark > 0:
                self._resent.add(gateway)
            return
        if seq == mark + 1:
            self._advance(gateway, seq)
            return
        pending = self._pending.setdefault(gateway, set())
        if len(pending) >= self.max_pending:
            self.overflowed += 1
            return
        pending.add(seq)

    def mark_many(self, handled: Iterable[tuple[str, int]]) -> None:
        for gateway, seq in sorted(handled):
            self.mark(gateway, seq)

    def advance_to(self, gateway: str, through: int) -> None:
        """Every seq ≤ ``through`` is handled (the gateway's ``dropped_through``)."""
        if through <= self._marks.get(gateway, 0):
            return
        pending = self._pending.get(gateway)
        if pending:
            pending.difference_update([s for s in pending if s <= through])
        self._advance(gateway, through)

    def _advance(self, gateway: str, mark: int) -> None:
        pending = self._pending.get(gateway)
        if pending:
            while mark + 1 in pending:
                mark += 1
                pending.remove(mark)
            if not pending:
                del self._pending[gateway]
        self._marks[gateway] = mark
        self._changed.add(gateway)

    def take_resent(self) -> dict[str, int]:
        """Watermarks to publish again (unchanged, so not saved again): their gateways re-sent
        seqs below them since the last call."""
        out = {gw: self._marks[gw] for gw in self._resent}
        self._resent.clear()
        return out

    def take_changed(self) -> dict[str, int]:
        """Watermarks that moved since the last call."""
        out = {gw: self._marks[gw] for gw in self._changed}
        self._changed.clear()
        return out

    def all_changed(self) -> None:
        """Mark every watermark as changed (to republish them after a reconnect)."""
        self._changed.update(self._marks)
