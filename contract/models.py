"""Wire messages of contract v1 (CONTRACT.md), as frozen, strict msgspec structs.

msgspec rather than pydantic here because decoding is on the ingest's hot path: a
100-reading batch decodes in about 0.5 µs per reading with msgspec against about 2.9 µs
with pydantic (docs/performance.md). Human-edited data (registry, catalog, rules) uses
pydantic, where line-numbered errors matter more than speed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
METRIC_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"

Slug = Annotated[str, msgspec.Meta(pattern=SLUG_PATTERN)]
MetricCode = Annotated[str, msgspec.Meta(pattern=METRIC_PATTERN)]
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
Seq = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]

Quality = Literal["good", "suspect", "bad", "calibrating", "maintenance"]
QUALITIES: tuple[Quality, ...] = ("good", "suspect", "bad", "calibrating", "maintenance")
GatewayState = Literal["online", "offline"]

MAX_READINGS_PER_BATCH = 5000
MAX_PAYLOAD_BYTES = 256 * 1024


# Reading ids are not pattern-checked here: a regex per field tripled decode cost, and
# the ingest checks every (sensor, metric) against the registry anyway (unknown ->
# ``unknown_sensor`` dead letter). Length bounds keep garbage short.
ShortId = Annotated[str, msgspec.Meta(min_length=1, max_length=63)]


class Reading(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    sensor: ShortId
    metric: ShortId
    ts: AwareDatetime
    value: float
    quality: Quality = "good"


class TelemetryBatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    v: Literal[1]
    gateway: Slug
    seq: Seq
    sent_at: AwareDatetime
    readings: Annotated[list[Reading], msgspec.Meta(min_length=1, max_length=MAX_READINGS_PER_BATCH)]


class Status(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=False):
    v: Literal[1]
    gateway: Slug
    state: GatewayState
    ts: AwareDatetime
    agent: str = ""
    outbox_batches: Annotated[int, msgspec.Meta(ge=0)] = 0
    outbox_oldest: AwareDatetime | None = None
    dropped_batches: Annotated[int, msgspec.Meta(ge=0)] = 0
    dropped_through: Annotated[int, msgspec.Meta(ge=0)] = 0
    last_seq: Annotated[int, msgspec.Meta(ge=0)] = 0
    # Added in v1 (optional, additive): the agent's totals since it started, e.g.
    # readings, batches_created, batches_resent, reconnects, batches_dropped.
    counters: dict[str, int] = msgspec.field(default_factory=dict)


class Ack(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Retained stored watermark: every batch with ``seq <= self.seq`` is durably handled."""

    v: Literal[1]
    seq: Annotated[int, msgspec.Meta(ge=0)]


class Command(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    v: Literal[1]
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    name: MetricCode
    sensor: Slug
    args: dict[str, Any]
    expires_at: AwareDatetime


class CommandResult(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    v: Literal[1]
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    ok: bool
    detail: str
    ts: AwareDatetime
