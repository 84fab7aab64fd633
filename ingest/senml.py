"""Classify one SenML message (``smartward/v1/{site}/{gateway}/senml``) into a ``ValidBatch`` or a
``DeadLetter``, with the reason codes of telemetry (docs/contract.md). Pure: no I/O, no clock.

Order of checks (as ``ingest/pipeline.py`` for telemetry):

1. the topic is a v1 ``senml`` topic (``schema`` / ``topic_mismatch``);
2. size, then the SenML decoding and resolution of ``contract/senml.py`` (``oversize``,
   ``bad_json``, ``non_finite``, ``schema``; a name not of our form is ``schema``);
3. the gateway is in the registry (``unknown_sensor``) under the topic's site
   (``topic_mismatch``);
4. every (sensor, metric) belongs to that gateway (``unknown_sensor``);
5. every unit is the catalog's (``schema``);
6. every time is inside the accepted window (``time_window``).

A SenML message has no ``seq``: the batch it becomes is *unsequenced*. It claims no
``(gateway, seq)``, never moves the gateway's ack watermark (stored or dead-lettered), and a
redelivery is a no-op because readings are unique by ``(sensor, metric, time)`` (the same
values again store nothing; other values make the message a ``conflict`` dead letter).
A value outside the catalog's physical bounds is stored with ``quality: bad``, as the edge's
drivers do (docs/contract.md "Device drivers").
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from contract import senml, topics
from contract.errors import DeadLetterReason, DecodeError, TopicError
from contract.models import MAX_PAYLOAD_BYTES, TelemetryBatch
from contract.registry import Registry
from ingest import deadletters
from ingest.pipeline import TimeWindow, contained
from ingest.ports import DeadLetter, ValidBatch

logger = logging.getLogger(__name__)

_DETAIL_ITEMS = 5


def is_senml(topic: str) -> bool:
    return topic.endswith("/senml")


def classify_senml(topic: str, raw: bytes, received_at: datetime, registry: Registry,
                   window: TimeWindow) -> ValidBatch | DeadLetter:
    """Never raises for any input bytes or topic string."""
    return contained(_classify, topic, raw, received_at, registry, window)


def _classify(topic: str, raw: bytes, received_at: datetime, registry: Registry,
              window: TimeWindow) -> ValidBatch | DeadLetter:
    gateway: str | None = None
    site: str | None = None

    def dead(reason: DeadLetterReason, detail: str) -> DeadLetter:
        # Never a seq: a SenML dead letter acknowledges nothing (no watermark moves).
        return deadletters.build(topic=topic, raw=raw, received_at=received_at, reason=reason,
                                 detail=f"senml: {detail}", gateway=gateway, site=site)

    try:
        parsed = topics.parse(topic)
    except TopicError as exc:
        return dead("schema", str(exc))
    site, gateway = parsed.site, parsed.gateway
    if parsed.kind != "senml":
        return dead("topic_mismatch", f"SenML pack on a {parsed.kind!r} topic")
    if len(raw) > MAX_PAYLOAD_BYTES:
        return dead("oversize", f"{len(raw)} bytes > {MAX_PAYLOAD_BYTES}")
    try:
        records = senml.decode(raw, received_at)
    except DecodeError as exc:
        return dead(exc.reason, exc.detail)

    registered_site = registry.site_of(gateway)
    if registered_site is None:
        return dead("unknown_sensor", f"gateway {gateway!r} is not in the registry")
    if registered_site != site:
        return dead("topic_mismatch", f"gateway {gateway!r} belongs to site {registered_site!r}, "
                    f"published under {site!r}")

    unknown = [(r.sensor, r.metric) for r in records if not registry.allows(gateway, r.sensor, r.metric)]
    if unknown:
        return dead("unknown_sensor", _list("not registered for this gateway", unknown))

    wrong = [(r.sensor, r.metric, str(r.unit)) for r in records if not senml.unit_ok(r.metric, r.unit)]
    if wrong:
        return dead("schema", _list("with a unit other than the catalog's "
                                    f"(accepted for {wrong[0][1]}: "
                                    f"{', '.join(repr(u) for u in senml.accepted_units(wrong[0][1]))})",
                                    wrong))

    lo, hi = received_at - window.past, received_at + window.future
    outside = [(r.sensor, r.metric, r.time.isoformat()) for r in records if not lo <= r.time <= hi]
    if outside:
        return dead("time_window", _list(f"reading time outside [{lo.isoformat()}, {hi.isoformat()}]",
                                         outside))

    readings = senml.readings(records)
    # seq 0 is never a wire seq (>= 1): with sequenced=False the stores claim nothing for it.
    batch = TelemetryBatch(v=1, gateway=gateway, seq=0, sent_at=received_at, readings=readings)
    return ValidBatch(site=site, topic=topic, received_at=received_at, batch=batch, raw=raw,
                      sequenced=False)


def _list(what: str, items: Sequence[tuple[str, ...]]) -> str:
    shown = ", ".join("/".join(i) for i in items[:_DETAIL_ITEMS])
    more = f" and {len(items) - _DETAIL_ITEMS} more" if len(items) > _DETAIL_ITEMS else ""
    return f"{len(items)} record(s) {what}: {shown}{more}"
