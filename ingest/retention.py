"""Retention: how long readings, rollups and dead letters are kept.

Nothing is deleted unless configured: the city's data store is a record, and deleting it is a
decision for its owners, not a default. A typical single server keeps raw readings for a
year or so and hourly rollups for much longer.

Under TimescaleDB, readings are removed with ``drop_chunks`` (whole 1-day chunks, so a chunk
is dropped once its newest possible row is past the cutoff: up to a day more is kept);
elsewhere with ``DELETE ... WHERE time < cutoff``. ``ingest_batches`` and the drop records
are never removed: they are the idempotence key and the data-completeness history; nor is
``ingest_unsequenced`` (one small row per stored SenML pack, the stream's record of it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from ingest.stores.records import RetentionResult


class RetentionTarget(Protocol):
    def apply_retention(self, *, readings_before: datetime | None, rollup_1m_before: datetime | None,
                        rollup_1h_before: datetime | None,
                        dead_letters_before: datetime | None) -> RetentionResult: ...


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Days to keep each kind of row; None keeps it forever."""

    readings_days: float | None = None
    rollup_1m_days: float | None = None
    rollup_1h_days: float | None = None
    dead_letters_days: float | None = None

    def __post_init__(self) -> None:
        for name in ("readings_days", "rollup_1m_days", "rollup_1h_days", "dead_letters_days"):
            days = getattr(self, name)
            if days is not None and days <= 0:
                raise ValueError(f"{name} must be positive (or None to keep forever), got {days}")


def _cutoff(now: datetime, days: float | None) -> datetime | None:
    return None if days is None else now - timedelta(days=days)


def apply_retention(store: RetentionTarget, policy: RetentionPolicy, now: datetime) -> RetentionResult:
    """Remove what ``policy`` no longer keeps, as of ``now`` (an aware datetime)."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    return store.apply_retention(
        readings_before=_cutoff(now, policy.readings_days),
        rollup_1m_before=_cutoff(now, policy.rollup_1m_days),
        rollup_1h_before=_cutoff(now, policy.rollup_1h_days),
        dead_letters_before=_cutoff(now, policy.dead_letters_days),
    )
