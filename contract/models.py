"""Wire messages of contract v1 (docs/contract.md), as frozen, strict msgspec structs.

msgspec rather than pydantic here because decoding is on the ingest's hot path: a
100-reading batch decodes in about 0.5 µs per reading with msgspec against about 2.9 µs
with pydantic (docs/performance.md). Human-edited data (registry, catalog, rules) uses
pydantic, where line-numbered errors matter more than speed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from contract.bounds import MAX_INT, SAFE_TEXT_PATTERN

SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
METRIC_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"

Slug = Annotated[str, msgspec.Meta(pattern=SLUG_PATTERN)]
MetricCode = Annotated[str, msgspec.Meta(pattern=METRIC_PATTERN)]
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
Seq = Annotated[int, msgspec.Meta(ge=1, le=MAX_INT)]
Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_INT)]
"""Every other integer of a payload (docs/contract.md "Bounds and text"); msgspec is strict, so a
float such as ``1e30`` or ``3.0`` is refused for it too."""

# Documented text lengths (docs/contract.md "Bounds and text").
AGENT_MAX_CHARS = 200
DETAIL_MAX_CHARS = 1000
COMMAND_ID_MAX_CHARS = 64
MAX_COUNTERS = 64
AgentText = Annotated[str, msgspec.Meta(max_length=AGENT_MAX_CHARS, pattern=SAFE_TEXT_PATTERN)]
DetailText = Annotated[str, msgspec.Meta(max_length=DETAIL_MAX_CHARS, pattern=SAFE_TEXT_PATTERN)]
CommandId = Annotated[str, msgspec.Meta(min_length=1, max_length=COMMAND_ID_MAX_CHARS,
                                        pattern=SAFE_TEXT_PATTERN)]
Counters = Annotated[dict[MetricCode, Count], msgspec.Meta(max_length=MAX_COUNTERS)]

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
    agent: AgentText = ""
    outbox_batches: Count = 0
    outbox_oldest: AwareDatetime | None = None
    dropped_batches: Count = 0
    dropped_through: Count = 0
    last_seq: Count = 0
    # Added in v1 (optional, additive): the agent's totals since it started, e.g.
    # readings, batches_created, batches_resent, reconnects, batches_dropped.
    counters: Counters = msgspec.field(default_factory=dict)


class Ack(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Retained stored watermark: every batch with ``seq <= self.seq`` is durably handled."""

    v: Literal[1]
    seq: Count


class Command(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    v: Literal[1]
    id: CommandId
    name: MetricCode
    sensor: Slug
    args: dict[str, Any]
    expires_at: AwareDatetime


class CommandResult(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    v: Literal[1]
    id: CommandId
    ok: bool
    detail: DetailText
    ts: AwareDatetime
