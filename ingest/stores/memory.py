"""``MemoryStore``: the fake ``Store`` for unit tests, with the same rules as the SQL stores
(``ingest/stores/writeplan.py``) and the same query methods.

``available = False`` makes every call raise ``StoreUnavailable`` (``ping`` answers False),
to test what the ingest does during a database outage. Rollups are computed on demand from
the readings, so they are always current.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from contract.registry import Registry
from ingest.errors import StoreUnavailable
from ingest.ports import DeadLetter, ValidBatch, WriteResult
from ingest.rollup import DEFAULT_MAX_ROWS, bucket_start
from ingest.stores import writeplan
from ingest.stores.records import (
    RESOLUTION_SECONDS,
    ROLLUP_QUALITIES,
    Completeness,
    Resolution,
    RetentionResult,
    RollupRow,
    SeqGap,
    StoredDeadLetter,
    StoredReading,
)
from ingest.stores.registry_rows import RegistryRows, registry_rows

if TYPE_CHECKING:
    from ingest.mirror import MirrorPage


class MemoryStore:
    def __init__(self) -> None:
        self.available = True
        self.writes = 0  # committed write() calls
        self.registry: RegistryRows | None = None
        self._lock = threading.Lock()
        self._readings: dict[writeplan.ReadingKey, StoredReading] = {}
        self._batches: dict[writeplan.BatchKey, writeplan.Previous] = {}
        self._dead: list[DeadLetter] = []
        self._once: set[bytes] = set()  # once_key of the letters kept (migration 0005)
        self._dead_removed = 0  # ids stay stable after retention
        self._marks: dict[str, int] = {}
        self._drops: dict[writeplan.BatchKey, datetime] = {}
        self._stream: list[list[StoredReading]] = []  # readings of each stored batch, in order
        self._mirror_checkpoints: dict[str, int] = {}

    def _check(self) -> None:
        if not self.available:
            raise StoreUnavailable("memory store marked unavailable")

    # --- Store protocol --------------------------------------------------------------------

    def migrate(self) -> None:
        self._check()

    def write(self, batches: Sequence[ValidBatch], dead: Sequence[DeadLetter], *,
              watermarks: Mapping[str, int] | None = None) -> WriteResult:
        plan = writeplan.plan_write(batches, dead)
        with self._lock:
            self._check()
            new_keys = {c.key for c in plan.claims if c.key not in self._batches}
            settled = writeplan.settle(plan, new_keys, self._batches)
            stored = {}
            for vb in settled.store:
                for r in vb.batch.readings:
                    old = self._readings.get((r.sensor, r.metric, r.ts))
                    if old is not None:
                        stored[(r.sensor, r.metric, r.ts)] = (old.value, old.quality)
            conflicts = writeplan.reading_conflicts(settled.store, stored)
            result = WriteResult(duplicate_batches=settled.duplicates, handled=settled.handled)
            for claim in plan.claims:
                if claim.key in new_keys:
                    self._batches[claim.key] = writeplan.Previous(claim.outcome, claim.digest)
            for i, vb in enumerate(settled.store):
                b = vb.batch
                if i in conflicts:
                    if not vb.sequenced:
                        continue
                    self._batches[(b.gateway, b.seq)] = writeplan.Previous(
                        "dead_letter", self._batches[(b.gateway, b.seq)].digest)
                    continue
                result.stored_batches += 1
                new_rows = []
                for r in b.readings:
                    key = (r.sensor, r.metric, r.ts)
                    if key not in self._readings:
                        row = StoredReading(r.ts, vb.site, b.gateway, r.sensor, r.metric, r.value, r.quality)
                        self._readings[key] = row
                        new_rows.append(row)
                self._stream.append(new_rows)
                result.stored_readings += len(new_rows)
            letters = [*settled.letters, *conflicts.values()]
            for d in letters:
                if d.once_key is None or d.once_key not in self._once:
                    self._dead.append(d)
                if d.once_key is not None:
                    self._once.add(d.once_key)
            result.dead_letters = letters
            if watermarks:
                self._save_marks(watermarks)
            self.writes += 1
            return result

    def watermarks(self) -> dict[str, int]:
        with self._lock:
            self._check()
            return dict(self._marks)

    def save_watermarks(self, marks: dict[str, int]) -> None:
        with self._lock:
            self._check()
            self._save_marks(marks)

    def _save_marks(self, marks: Mapping[str, int]) -> None:
        for gateway, seq in marks.items():
            self._marks[gateway] = max(seq, self._marks.get(gateway, 0))

    def record_dropped(self, gateway: str, through_seq: int, at: datetime) -> None:
        with self._lock:
            self._check()
            self._drops.setdefault((gateway, through_seq), at)

    def handled_seqs(self, gateway: str, after: int, limit: int) -> list[int]:
        with self._lock:
            self._check()
            seqs = {s for (g, s) in self._batches if g == gateway and s > after}
            through = self._through(gateway)
        seqs.update(range(after + 1, min(through, after + limit) + 1))
        return sorted(seqs)[:limit]

    def ping(self) -> bool:
        return self.available

    def close(self) -> None:
        pass

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the stored stream: followed by the rollups and the InfluxDB mirror (MirrorSource) --

    def read_since(self, checkpoint: int, limit: int) -> MirrorPage:
        """Checkpoint: how many stored batches were read."""
        from ingest.mirror import MirrorPage, MirrorRow

        with self._lock:
            self._check()
            rows: list[MirrorRow] = []
            while checkpoint < len(self._stream) and len(rows) < limit:
                rows.extend(MirrorRow(r.time, r.site, r.gateway, r.sensor, r.metric, r.value, r.quality)
                            for r in self._stream[checkpoint])
                checkpoint += 1
        return MirrorPage(rows, checkpoint)

    def mirror_checkpoint(self, name: str) -> int:
        with self._lock:
            self._check()
            return self._mirror_checkpoints.get(name, 0)

    def save_mirror_checkpoint(self, name: str, checkpoint: int) -> None:
        with self._lock:
            self._check()
            self._mirror_checkpoints[name] = checkpoint

    # --- registry, rollups, retention ------------------------------------------------------

    def sync_registry(self, registry: Registry) -> None:
        with self._lock:
            self._check()
            self.registry = registry_rows(registry)

    def refresh_rollups(self, *, max_rows: int = DEFAULT_MAX_ROWS) -> int:
        self._check()
        return 0  # computed on demand

    def apply_retention(self, *, readings_before: datetime | None, rollup_1m_before: datetime | None,
                        rollup_1h_before: datetime | None,
                        dead_letters_before: datetime | None) -> RetentionResult:
        # Rollups are derived on demand here, so only readings and dead letters are kept or not.
        with self._lock:
            self._check()
            n_readings = n_dead = 0
            if readings_before is not None:
                old = [k for k, r in self._readings.items() if r.time < readings_before]
                for k in old:
                    del self._readings[k]
                n_readings = len(old)
            if dead_letters_before is not None:
                kept = [d for d in self._dead if d.received_at >= dead_letters_before]
                n_dead = len(self._dead) - len(kept)
                self._dead_removed += n_dead
                self._dead = kept
            return RetentionResult(readings_rows=n_readings, dead_letters_rows=n_dead)

    # --- queries -----------------------------------------------------------------------------

    def query_readings(self, sensor: str, metric: str, start: datetime, end: datetime) -> list[StoredReading]:
        """Readings of one series with ``start <= time < end``, oldest first."""
        with self._lock:
            self._check()
            rows = [r for r in self._readings.values()
                    if r.sensor == sensor and r.metric == metric and start <= r.time < end]
        return sorted(rows, key=lambda r: r.time)

    def query_rollup(self, resolution: Resolution, sensor: str, metric: str, start: datetime,
                     end: datetime) -> list[RollupRow]:
        """Buckets of one series with ``start <= bucket < end``, oldest first."""
        seconds = RESOLUTION_SECONDS[resolution]
        with self._lock:
            self._check()
            groups: dict[datetime, list[StoredReading]] = {}
            for r in self._readings.values():
                if r.sensor == sensor and r.metric == metric and r.quality in ROLLUP_QUALITIES:
                    groups.setdefault(bucket_start(r.time, seconds), []).append(r)
        rows = []
        for bucket in sorted(b for b in groups if start <= b < end):
            values = [r.value for r in groups[bucket]]
            rows.append(RollupRow(bucket, groups[bucket][0].site, sensor, metric, sum(values) / len(values),
                                  min(values), max(values), len(values)))
        return rows

    def dead_letter_rows(self, *, limit: int = 100) -> list[StoredDeadLetter]:
        """Newest first."""
        with self._lock:
            self._check()
            numbered = [StoredDeadLetter(self._dead_removed + i + 1, d) for i, d in enumerate(self._dead)]
        return numbered[::-1][:limit]

    def batch_outcomes(self, gateway: str) -> dict[int, str]:
        with self._lock:
            self._check()
            return {s: p.outcome for (g, s), p in self._batches.items() if g == gateway}

    def seq_gaps(self, gateway: str | None = None) -> list[SeqGap]:
        with self._lock:
            self._check()
            gateways = sorted({g for g, _ in self._batches} | {g for g, _ in self._drops})
            out: list[SeqGap] = []
            for gw in gateways:
                if gateway is None or gw == gateway:
                    seqs = sorted(s for g, s in self._batches if g == gw)
                    out.extend(_gaps(gw, seqs, self._through(gw)))
        return out

    def completeness(self) -> list[Completeness]:
        with self._lock:
            self._check()
            gateways = sorted({g for g, _ in self._batches} | {g for g, _ in self._drops})
            site_of = {g.id: g.site for g in (self.registry.gateways if self.registry else [])}
            out = []
            for gw in gateways:
                outcomes = [p.outcome for (g, _), p in self._batches.items() if g == gw]
                seqs = sorted(s for g, s in self._batches if g == gw)
                through = self._through(gw)
                gaps = _gaps(gw, seqs, through)
                expected = max(seqs[-1] if seqs else 0, through)
                stored = outcomes.count("stored")
                lost = sum(g.lost for g in gaps)
                out.append(Completeness(
                    gw, site_of.get(gw), expected, stored, outcomes.count("dead_letter"), lost,
                    sum(g.missing for g in gaps) - lost,
                    round(100.0 * stored / expected, 2) if expected else None))
        return out

    def _through(self, gateway: str) -> int:
        return max((t for g, t in self._drops if g == gateway), default=0)


def _gaps(gateway: str, seqs: Iterable[int], through: int) -> list[SeqGap]:
    """The runs of missing seqs, as the ``seq_gaps`` view computes them."""
    out = []
    prev = 0
    for seq in seqs:
        if seq > prev + 1:
            out.append((prev + 1, seq - 1))
        prev = seq
    if through > prev:
        out.append((prev + 1, through))
    return [SeqGap(gateway, first, last, last - first + 1, max(0, min(last, through) - first + 1))
            for first, last in out]
