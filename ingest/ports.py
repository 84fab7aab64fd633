"""Ports of the ingest: what the pipeline needs from a store, and the rows it hands over.

Adapters are named by technology (``SqliteStore``, ``PostgresStore`` for PostgreSQL with or
without TimescaleDB, ``InfluxMirror``); ``MemoryStore`` is the fake for unit tests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from contract.errors import DeadLetterReason
from contract.models import TelemetryBatch

Outcome = Literal["stored", "dead_letter"]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message the ingest could not store, kept with its raw bytes (docs/contract.md)."""

    received_at: datetime
    topic: str
    reason: DeadLetterReason
    detail: str
    payload: bytes
    gateway: str | None = None
    site: str | None = None
    seq: int | None = None  # when the payload was readable enough to tell
    # Set for a message that may come again unchanged (a retained status): the store keeps
    # one letter per key (migration 0005), so a restart does not file it again.
    once_key: bytes | None = None


@dataclass(frozen=True, slots=True)
class ValidBatch:
    """A decoded batch that passed every check against the contract and the registry."""

    site: str
    topic: str
    received_at: datetime
    batch: TelemetryBatch
    raw: bytes  # kept so that a conflicting re-send can be dead-lettered with its bytes
    # False for a batch without a wire seq (SenML, ingest/senml.py): it claims no
    # (gateway, seq), moves no watermark, and is idempotent by its readings' keys alone.
    sequenced: bool = True


@dataclass(slots=True)
class WriteResult:
    """What one transaction did. ``handled`` lists every (gateway, seq) now durably handled
    (stored now, stored before, or dead-lettered) so the worker can advance watermarks."""

    stored_batches: int = 0
    stored_readings: int = 0
    duplicate_batches: int = 0
    dead_letters: list[DeadLetter] = field(default_factory=list)
    handled: list[tuple[str, int]] = field(default_factory=list)


class Store(Protocol):
    """System of record for readings, batches and dead letters."""

    def migrate(self) -> None:
        """Create or upgrade the schema, idempotently (numbered migrations)."""

    def write(self, batches: Sequence[ValidBatch], dead: Sequence[DeadLetter], *,
              watermarks: Mapping[str, int] | None = None) -> WriteResult:
        """Store batches and dead letters (and ``watermarks``, as ``save_watermarks`` would)
        in ONE transaction, idempotently:
        a (gateway, seq) already in ``ingest_batches`` is a no-op (duplicate); a reading
        whose (sensor, metric, time) exists with a different value or quality turns its whole
        batch into a ``conflict`` dead letter (never a silent overwrite). Raises
        ``StoreUnavailable`` (transient) when the database cannot be reached."""

    def watermarks(self) -> dict[str, int]:
        """Highest contiguous handled seq per gateway, as persisted."""

    def save_watermarks(self, marks: dict[str, int]) -> None:
        """Persist watermarks (called in or right after the write transaction)."""

    def record_dropped(self, gateway: str, through_seq: int, at: datetime) -> None:
        """The gateway declared every unacked seq <= through_seq irrecoverably dropped."""

    def ping(self) -> bool:
        """True when the store answers (readiness)."""

    def close(self) -> None: ...
