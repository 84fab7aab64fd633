"""The writer loop against a fake store and a fake link: commit before ack, watermarks,
dead letters, backpressure on a store outage. The real-broker tests are in
tests/integration/test_ingest_*.py."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from ingest.errors import StoreUnavailable
from ingest.ports import DeadLetter, ValidBatch, WriteResult


class FakeStore:
    """In-memory Store (and HandledSeqSource) with the contract's idempotence rules.

    ``down`` makes every call raise StoreUnavailable (an outage); ``calls`` logs the order of
    operations so tests can check commit-before-ack.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.batches: dict[tuple[str, int], str] = {}  # (gateway, seq) -> outcome
        self.raw: dict[tuple[str, int], bytes] = {}
        self.readings: dict[tuple[str, str, datetime], tuple[float, str]] = {}
        self.dead: list[DeadLetter] = []
        self.marks: dict[str, int] = {}
        self.dropped: dict[str, int] = {}
        self.down = False
        self.writes = 0
        self.calls: list[str] = []

    def _check(self) -> None:
        if self.down:
            raise StoreUnavailable("fake outage")

    def migrate(self) -> None:
        self._check()

    def write(self, batches: Sequence[ValidBatch], dead: Sequence[DeadLetter], *,
              watermarks: Mapping[str, int] | None = None) -> WriteResult:
        with self.lock:
            self._check()
            if watermarks:
                self.calls.append("save_watermarks")
                for gw, seq in watermarks.items():
                    self.marks[gw] = max(seq, self.marks.get(gw, 0))
            res = WriteResult()
            for vb in batches:
                b = vb.batch
                key = (b.gateway, b.seq)
                if key in self.batches:
                    res.duplicate_batches += 1
                    res.handled.append(key)
                    continue
                clash = [r for r in b.readings
                         if self.readings.get((r.sensor, r.metric, r.ts), (r.value, r.quality))
                         != (r.value, r.quality)]
                if clash:
                    d = DeadLetter(vb.received_at, vb.topic, "conflict", "clash", vb.raw, b.gateway,
                                   vb.site, b.seq)
                    self.dead.append(d)
                    self.batches[key] = "dead_letter"
                    res.dead_letters.append(d)
                    res.handled.append(key)
                    continue
                for r in b.readings:
                    self.readings[(r.sensor, r.metric, r.ts)] = (r.value, r.quality)
                self.batches[key] = "stored"
                self.raw[key] = vb.raw
                res.stored_batches += 1
                res.stored_readings += len(b.readings)
                res.handled.append(key)
            for d in dead:
                self.dead.append(d)
                res.dead_letters.append(d)
                if d.gateway is not None and d.seq is not None:
                    self.batches.setdefault((d.gateway, d.seq), "dead_letter")
                    res.handled.append((d.gateway, d.seq))
            self.writes += 1
            self.calls.append("write")
            return res

    def watermarks(self) -> dict[str, int]:
        self._check()
        return dict(self.marks)

    def save_watermarks(self, marks: dict[str, int]) -> None:
        self._check()
        for gw, seq in marks.items():
            self.marks[gw] = max(seq, self.marks.get(gw, 0))

    def record_dropped(self, gateway: str, through_seq: int, at: datetime) -> None:
        self._check()
        self.dropped[gateway] = max(through_seq, self.dropped.get(gateway, 0))

    def handled_seqs(self, gateway: str, after: int, limit: int) -> list[int]:
        self._check()
        with self.lock:
            seqs = sorted(s for (g, s) in self.batches if g == gateway and s > after)
        through = self.dropped.get(gateway, 0)
        seqs = sorted(set(seqs) | set(range(after + 1, through + 1)))
        return seqs[:limit]

    def ping(self) -> bool:
        return not self.down

    def close(self) -> None:
        pass


def now() -> datetime:
    return datetime.now(UTC)
