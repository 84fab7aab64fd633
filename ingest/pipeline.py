"""Classify one MQTT message into a ``ValidBatch`` or a ``DeadLetter``. Pure: no I/O, no clock.

Order of checks, each with the reason code of docs/contract.md:

1. the topic is a v1 telemetry topic (``schema`` if it is not a v1 topic at all,
   ``topic_mismatch`` if it is another kind);
2. size (``oversize``), then the codec (``bad_json`` / ``non_finite`` / ``schema``);
3. payload gateway = topic gateway, and topic site = the registry's site of that gateway
   (``topic_mismatch``): the broker ACL binds a gateway to its site, and the ingest re-checks
   it (docs/reliability.md S1), because a mistake in a generated ACL must not store data under the
   wrong ward;
4. the gateway is in the registry and every (sensor, metric) belongs to it (``unknown_sensor``);
5. every reading time is inside the accepted window around ``received_at`` (``time_window``).

A dead letter carries the batch's ``seq`` only when the sender is known to be the topic's
gateway at its registered site, so that a dead-lettered batch advances the ack watermark
(the edge may then delete it: retrying a permanently bad batch would never help) while a
spoofed or misrouted one never acknowledges anybody's data.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec

from contract import topics
from contract.codec import decode_telemetry
from contract.errors import DeadLetterReason, DecodeError, TopicError
from contract.models import MAX_PAYLOAD_BYTES
from contract.registry import Registry
from ingest import deadletters
from ingest.ports import DeadLetter, ValidBatch

logger = logging.getLogger(__name__)

# How many offending readings a detail names before it says "and N more".
_DETAIL_ITEMS = 5


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Readings older than ``past`` or newer than ``future`` relative to ``received_at``
    are refused (``time_window``)."""

    past: timedelta = timedelta(days=30)
    future: timedelta = timedelta(minutes=5)


class _Envelope(msgspec.Struct):
    """Just enough of a batch to know who sent it, for batches that fail full decoding."""

    gateway: str
    seq: int


_envelope = msgspec.json.Decoder(_Envelope)


def _envelope_of(raw: bytes) -> tuple[str, int] | None:
    """(gateway, seq) of a payload that the strict codec refused, if still readable."""
    try:
        env = _envelope.decode(raw)
        gateway, seq = env.gateway, env.seq
    except RecursionError:
        return None
    except (msgspec.DecodeError, msgspec.ValidationError):
        # Python's json reads NaN/Infinity (the non_finite case); anything else is unreadable.
        try:
            data: Any = json.loads(raw)
        except (ValueError, RecursionError):
            return None
        if not isinstance(data, dict):
            return None
        g, n = data.get("gateway"), data.get("seq")
        if not isinstance(g, str) or type(n) is not int:
            return None
        gateway, seq = g, n
    if not 1 <= seq <= 2**63 - 1:
        return None
    return gateway, seq


def classify(
    topic: str,
    raw: bytes,
    received_at: datetime,
    registry: Registry,
    window: TimeWindow,
) -> ValidBatch | DeadLetter:
    """Never raises for any input bytes or topic string."""
    return contained(_classify, topic, raw, received_at, registry, window)


Classifier = Callable[[str, bytes, datetime, Registry, TimeWindow], "ValidBatch | DeadLetter"]


def contained(
    classifier: Classifier,
    topic: str,
    raw: bytes,
    received_at: datetime,
    registry: Registry,
    window: TimeWindow,
) -> ValidBatch | DeadLetter:
    """``classifier``'s answer, or a dead letter when it raises: a bug in a classifier must cost
    one dead letter, never the worker (docs/reliability.md, promise 3)."""
    try:
        return classifier(topic, raw, received_at, registry, window)
    except RecursionError:
        return deadletters.build(topic=topic, raw=raw, received_at=received_at, reason="bad_json",
                                 detail="nesting too deep")
    except Exception as exc:
        logger.exception("classifying a message of %d bytes on %r failed", len(raw), topic)
        return deadletters.build(topic=topic, raw=raw, received_at=received_at, reason="schema",
                                 detail=f"unexpected error while validating: {exc!r}")


def _classify(
    topic: str,
    raw: bytes,
    received_at: datetime,
    registry: Registry,
    window: TimeWindow,
) -> ValidBatch | DeadLetter:

    def dead(reason: DeadLetterReason, detail: str, *, gateway: str | None = None,
             site: str | None = None, seq: int | None = None) -> DeadLetter:
        return deadletters.build(topic=topic, raw=raw, received_at=received_at, reason=reason,
                                 detail=detail, gateway=gateway, site=site, seq=seq)

    try:
        parsed = topics.parse(topic)
    except TopicError as exc:
        return dead("schema", str(exc))
    site, gateway = parsed.site, parsed.gateway
    if parsed.kind != "telemetry":
        return dead("topic_mismatch", f"telemetry batch on a {parsed.kind!r} topic",
                    gateway=gateway, site=site)
    if len(raw) > MAX_PAYLOAD_BYTES:
        return dead("oversize", f"{len(raw)} bytes > {MAX_PAYLOAD_BYTES}", gateway=gateway, site=site)

    registered_site = registry.site_of(gateway)
    try:
        batch = decode_telemetry(raw)
    except DecodeError as exc:
        seq = None
        if registered_site == site:
            env = _envelope_of(raw)
            if env is not None and env[0] == gateway:
                seq = env[1]
        return dead(exc.reason, exc.detail, gateway=gateway, site=site, seq=seq)

    if batch.gateway != gateway:
        return dead("topic_mismatch",
                    f"payload gateway {batch.gateway!r} published on gateway {gateway!r}'s topic",
                    gateway=gateway, site=site)
    if registered_site is None:
        return dead("unknown_sensor", f"gateway {gateway!r} is not in the registry",
                    gateway=gateway, site=site)
    if registered_site != site:
        return dead("topic_mismatch",
                    f"gateway {gateway!r} belongs to site {registered_site!r}, published under {site!r}",
                    gateway=gateway, site=site)

    readings = batch.readings
    allowed = _allowed_pairs(registry, gateway)
    if not {(r.sensor, r.metric) for r in readings} <= allowed:
        unknown = [(r.sensor, r.metric) for r in readings if (r.sensor, r.metric) not in allowed]
        return dead("unknown_sensor", _list_detail("not registered for this gateway", unknown),
                    gateway=gateway, site=site, seq=batch.seq)

    lo = received_at - window.past
    hi = received_at + window.future
    times = [r.ts for r in readings]
    if min(times) < lo or max(times) > hi:
        outside = [(r.sensor, r.metric, r.ts.isoformat()) for r in readings if not lo <= r.ts <= hi]
        return dead("time_window",
                    _list_detail(f"reading time outside [{lo.isoformat()}, {hi.isoformat()}]", outside),
                    gateway=gateway, site=site, seq=batch.seq)

    return ValidBatch(site=site, topic=topic, received_at=received_at, batch=batch, raw=raw)


@functools.lru_cache(maxsize=4096)
def _allowed_pairs(registry: Registry, gateway: str) -> frozenset[tuple[str, str]]:
    """(sensor, metric) pairs of one gateway; the Registry is immutable, so caching is safe."""
    if gateway not in registry.gateways:
        return frozenset()
    return frozenset((s.id, m) for s in registry.sensors_of(gateway) for m in s.metrics)


def _list_detail(what: str, items: Sequence[tuple[str, ...]]) -> str:
    shown = ", ".join("/".join(i) for i in items[:_DETAIL_ITEMS])
    more = f" and {len(items) - _DETAIL_ITEMS} more" if len(items) > _DETAIL_ITEMS else ""
    return f"{len(items)} reading(s) {what}: {shown}{more}"
