"""Cutting readings into telemetry batches.

A batch is cut when it holds ``max_readings`` or when its first reading has waited
``flush_interval`` (clock time). Sealing encodes it once, with its ``seq`` and ``sent_at``:
those bytes are stored in the outbox and every (re-)send publishes exactly them, so a
redelivered batch is byte-identical and the store can treat it as a no-op.

The 256 KiB payload limit (docs/contract.md) is enforced here, before anything is stored or
published: an encoded batch over the limit is split in halves until every part fits. The
edge never sends an oversize payload: with MQTT 5 Mosquitto answers one with reason 0x95,
which paho treats as a protocol error and answers with an endless reconnect/resend loop
(docs/reliability.md); with MQTT 3.1.1 it would be PUBACKed and silently dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from contract.codec import encode
from contract.models import MAX_PAYLOAD_BYTES, MAX_READINGS_PER_BATCH, Reading, TelemetryBatch
from edge.errors import EdgeError


@dataclass(frozen=True, slots=True)
class SealedBatch:
    """One encoded telemetry batch, as stored in the outbox and published."""

    seq: int
    created_at: datetime
    readings: int
    payload: bytes


class Batcher:
    """The open batch. Pure: no I/O, time passed in."""

    def __init__(self, *, max_readings: int, flush_interval: timedelta) -> None:
        if not 1 <= max_readings <= MAX_READINGS_PER_BATCH:
            raise ValueError(f"max_readings must be 1..{MAX_READINGS_PER_BATCH}")
        self.max_readings = max_readings
        self.flush_interval = flush_interval
        self._readings: list[Reading] = []
        self._opened_at: datetime | None = None

    def __len__(self) -> int:
        return len(self._readings)

    @property
    def deadline(self) -> datetime | None:
        """When the open batch is due by age; None when it is empty."""
        return None if self._opened_at is None else self._opened_at + self.flush_interval

    def add(self, readings: Sequence[Reading], now: datetime) -> None:
        if not readings:
            return
        if self._opened_at is None:
            self._opened_at = now
        self._readings.extend(readings)

    def due(self, now: datetime) -> bool:
        deadline = self.deadline
        return len(self._readings) >= self.max_readings or (deadline is not None and now >= deadline)

    def cut(self, now: datetime, *, force: bool = False) -> list[list[Reading]]:
        """The batches due at ``now``: every full one, and the rest when old enough (or forced)."""
        out: list[list[Reading]] = []
        n = self.max_readings
        while len(self._readings) >= n:
            out.append(self._readings[:n])
            del self._readings[:n]
        deadline = self.deadline
        if self._readings and (force or (deadline is not None and now >= deadline)):
            out.append(self._readings)
            self._readings = []
        if not self._readings:
            self._opened_at = None
        return out


class ReadingTooLarge(EdgeError):
    """A single reading does not fit in a payload (cannot happen with contract-valid ids)."""


def seal(
    gateway: str,
    first_seq: int,
    sent_at: datetime,
    chunks: Sequence[Sequence[Reading]],
    *,
    max_payload_bytes: int = MAX_PAYLOAD_BYTES,
) -> list[SealedBatch]:
    """Encode ``chunks`` as batches ``first_seq, first_seq + 1, ...``, splitting any chunk
    whose payload would exceed ``max_payload_bytes`` (so there may be more batches than
    chunks; seqs stay contiguous and readings keep their order)."""
    out: list[SealedBatch] = []
    seq = first_seq
    # A stack, so the halves of a split chunk are sealed in order, before the next chunk.
    pending: list[Sequence[Reading]] = [c for c in reversed(chunks) if c]
    while pending:
        chunk = pending.pop()
        payload = encode(TelemetryBatch(v=1, gateway=gateway, seq=seq, sent_at=sent_at,
                                        readings=list(chunk)))
        if len(payload) > max_payload_bytes:
            if len(chunk) == 1:
                raise ReadingTooLarge(f"one reading encodes to {len(payload)} bytes > {max_payload_bytes}")
            half = len(chunk) // 2
            pending.append(chunk[half:])
            pending.append(chunk[:half])
            continue
        out.append(SealedBatch(seq=seq, created_at=sent_at, readings=len(chunk), payload=payload))
        seq += 1
    return out
