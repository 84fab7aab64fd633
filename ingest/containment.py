"""What the worker does with a message it cannot handle (docs/contract.md "Bounds and text"): no
message — a bug of ours included — may stop it, now or after a restart.

- :func:`poison_letter`: a ``schema`` dead letter for a message whose handling raised (counted
  in ``smartward_ingest_unhandled_messages{stage}``, logged with safe text);
- :func:`write_letters`: dead letters together; if the store refuses them, one by one; a letter
  refused even alone is stored in its minimal form (``deadletters.minimal``), and if even that is
  refused it is logged (``LOST``) and counted: the worker goes on.

Only an unavailable store pauses the worker (``write`` then retries, and returns None when the
worker stops meanwhile).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from contract import topics
from contract.bounds import safe_text
from contract.registry import Registry
from ingest import deadletters
from ingest.errors import StoreError
from ingest.metrics import IngestMetrics
from ingest.pipeline import TimeWindow, classify
from ingest.ports import DeadLetter, ValidBatch, WriteResult

logger = logging.getLogger("ingest.worker")

# Writes letters in one transaction, retrying while the store is unavailable; raises StoreError
# when the store refuses them for good; None when the worker stopped meanwhile.
WriteLetters = Callable[[list[DeadLetter]], WriteResult | None]


def poison_letter(topic: str, payload: bytes, received_at: datetime, stage: str, exc: BaseException, *,
                  registry: Registry, window: TimeWindow, metrics: IngestMetrics) -> DeadLetter:
    """A ``schema`` dead letter for a message whose handling raised (counted, logged). A batch
    from its proven sender keeps its seq: the letter handles it and the watermark moves on, as
    for any dead-lettered batch (the raw bytes are kept)."""
    metrics.unhandled.labels(stage).inc()
    logger.error("message on %s (%d bytes) could not be handled at %s: %s; dead-lettered",
                 safe_text(topic, 200), len(payload), stage, safe_text(repr(exc), 500), exc_info=exc)
    gateway = site = None
    seq: int | None = None
    try:
        t = topics.parse(topic)
        gateway, site = t.gateway, t.site
        if t.kind == "telemetry":
            c = classify(topic, payload, received_at, registry, window)
            seq = c.batch.seq if isinstance(c, ValidBatch) else c.seq
    except Exception:  # the letter is made without a seq then
        seq = None
    return deadletters.build(
        topic=topic, raw=payload, received_at=received_at, reason="schema",
        detail=f"unexpected error while handling the message ({stage}): {exc!r}",
        gateway=gateway, site=site, seq=seq, once=topic.endswith("/status"))


def write_letters(letters: list[DeadLetter], write: WriteLetters,
                  metrics: IngestMetrics) -> WriteResult | None:
    """Store ``letters`` whatever the store refuses; None only when the worker stopped while the
    store was unavailable (nothing of it is acknowledged then)."""
    if not letters:
        return WriteResult()
    try:
        return write(letters)
    except StoreError as exc:
        if len(letters) > 1:
            logger.error("store refused %d dead letters together (%s); one by one", len(letters),
                         safe_text(str(exc), 300))
    total = WriteResult()
    for letter in letters:
        for form, stage in ((letter, ""), (deadletters.minimal(letter), "letter_minimal")):
            if stage:
                metrics.unhandled.labels(stage).inc()
            try:
                r = write([form])
            except StoreError as exc:
                logger.error("store refused a dead letter on %s (%s)", safe_text(letter.topic, 200),
                             safe_text(str(exc), 300))
                continue
            if r is None:
                return None
            merge(total, r)
            break
        else:
            metrics.unhandled.labels("letter_lost").inc()
            logger.error("LOST: the store refuses even a minimal dead letter; topic %s, reason %s, "
                         "detail %s, payload %s", safe_text(letter.topic, 200), letter.reason,
                         safe_text(letter.detail, 300), safe_text(repr(letter.payload[:300]), 400))
    return total


def merge(total: WriteResult, r: WriteResult) -> None:
    total.stored_batches += r.stored_batches
    total.stored_readings += r.stored_readings
    total.duplicate_batches += r.duplicate_batches
    total.dead_letters.extend(r.dead_letters)
    total.handled.extend(r.handled)
