"""A flush: the messages the ingest writer takes together, classified for one transaction
(ingest/worker.py). No store, no watermark tracker: what to write, what to dead-letter, which
status messages report drops."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from contract import topics
from contract.codec import decode_status
from contract.errors import DecodeError, TopicError
from contract.registry import Registry
from ingest import containment, deadletters
from ingest.metrics import IngestMetrics
from ingest.pipeline import TimeWindow, classify
from ingest.ports import DeadLetter, ValidBatch
from ingest.senml import classify_senml, is_senml
from ingest.source import Inbound


@dataclass(slots=True)
class Flush:
    """Messages taken together and classified: one transaction."""

    items: list[Inbound]
    valid: list[ValidBatch] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    # (gateway, dropped_through, received_at) from status messages; the writer keeps those
    # above the gateway's watermark.
    drops: list[tuple[str, int, datetime]] = field(default_factory=list)
    n_telemetry: int = 0
    in_flush_duplicates: int = 0
    acked: bool = False


class Classifier:
    """Turns the messages of a flush into valid batches, dead letters and reported drops."""

    def __init__(self, registry: Registry, window: TimeWindow, metrics: IngestMetrics) -> None:
        self.registry = registry
        self.window = window
        self.metrics = metrics

    def poison_letter(self, item: Inbound, stage: str, exc: BaseException) -> DeadLetter:
        return containment.poison_letter(
            item.topic, item.payload, datetime.fromtimestamp(item.received_at, UTC), stage, exc,
            registry=self.registry, window=self.window, metrics=self.metrics)

    def prepare(self, items: list[Inbound]) -> Flush:
        """Classify every message of a flush."""
        flush = Flush(items)
        dead = flush.dead
        seen: dict[tuple[str, int], bytes] = {}
        for item in items:
            try:
                self._prepare_one(item, flush, seen)
            except Exception as exc:  # a bug of ours: one dead letter, never the worker
                dead.append(self.poison_letter(item, "classify", exc))
        m = self.metrics
        m.received.labels("telemetry").inc(flush.n_telemetry)
        m.received.labels("status").inc(len(items) - flush.n_telemetry)
        return flush

    def _prepare_one(self, item: Inbound, flush: Flush, seen: dict[tuple[str, int], bytes]) -> None:
        valid, dead = flush.valid, flush.dead
        received = datetime.fromtimestamp(item.received_at, UTC)
        if item.topic.endswith("/status"):
            self._classify_status(item, received, dead, flush.drops)
            return
        flush.n_telemetry += 1
        if is_senml(item.topic):  # no seq: nothing to de-duplicate here, the store does it
            senml = classify_senml(item.topic, item.payload, received, self.registry, self.window)
            if isinstance(senml, ValidBatch):
                valid.append(senml)
            else:
                dead.append(senml)
            return
        classified = classify(item.topic, item.payload, received, self.registry, self.window)
        if isinstance(classified, ValidBatch):
            # A redelivery of a batch still waiting in this flush: identical bytes are the
            # same batch; different bytes go to the store, which files a conflict.
            key = (classified.batch.gateway, classified.batch.seq)
            if seen.get(key) == item.payload:
                flush.in_flush_duplicates += 1
                return
            seen[key] = item.payload
            valid.append(classified)
        else:
            dead.append(classified)

    def _classify_status(self, item: Inbound, received: datetime, dead: list[DeadLetter],
                         drops: list[tuple[str, int, datetime]]) -> None:
        def letter(reason: Any, detail: str, gateway: str | None = None, site: str | None = None) -> None:
            # A status is retained: the same poison comes back at every restart (``once``).
            dead.append(deadletters.build(topic=item.topic, raw=item.payload, received_at=received,
                                          reason=reason, detail=detail, gateway=gateway, site=site,
                                          once=True))
        try:
            t = topics.parse(item.topic)
        except TopicError as exc:
            letter("schema", str(exc))
            return
        try:
            status = decode_status(item.payload)
        except DecodeError as exc:
            letter(exc.reason, f"status: {exc.detail}", t.gateway, t.site)
            return
        if status.gateway != t.gateway or self.registry.site_of(t.gateway) != t.site:
            letter("topic_mismatch", f"status of {status.gateway!r} on {item.topic!r} "
                   f"(registered site {self.registry.site_of(t.gateway)!r})", t.gateway, t.site)
            return
        if status.dropped_through > 0:
            # Compared with the watermark in the worker's commit.
            drops.append((t.gateway, status.dropped_through, received))
