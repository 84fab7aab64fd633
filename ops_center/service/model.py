"""The ops service's small parts: its counters and progress view (what tests, the stack and
the CLI read), the gateways' clocks, and the worker queue's items."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from prometheus_client import CollectorRegistry, Gauge

from ops_center.service.mqtt import Inbound
from ops_center.service.persist import WriterStats


@dataclass(slots=True)
class ServiceCounters:
    """Totals since start; written by the worker only."""

    messages: int = 0
    telemetry: int = 0
    senml: int = 0  # SenML packs of third-party devices (RFC 8428)
    statuses: int = 0
    duplicates: int = 0
    invalid: int = 0  # undecodable or topic/payload mismatch (the ingest dead-letters them)
    failed: int = 0  # messages whose evaluation raised (a bug): logged, acknowledged, skipped
    readings: int = 0
    alert_changes: int = 0
    incident_changes: int = 0
    ticks: int = 0
    snapshots: int = 0
    snapshot_failures: int = 0
    acked: int = 0
    actions: int = 0
    actions_unknown: int = 0  # people's actions on incidents the rule state no longer tracks
    loop_errors: int = 0


@dataclass(frozen=True, slots=True)
class ServiceProgress:
    """What a test, the stack or the CLI may look at (a copy, published after each step)."""

    connected: bool
    restored: bool
    store_ok: bool
    counters: ServiceCounters
    through: dict[str, int]  # per gateway: every seq up to this one evaluated
    highest: dict[str, int]  # per gateway: highest seq evaluated
    last_sent: dict[str, datetime]  # per gateway: newest batch sent_at evaluated
    pending_acks: int
    queue_depth: int
    open_incidents: int
    last_snapshot: datetime | None = None


@dataclass(slots=True)
class GatewayClock:
    last_sent: float  # newest sent_at seen (gateway clock, epoch s)
    last_received: float  # wall time that batch arrived (epoch s)


@dataclass(slots=True)
class Command:
    run: Callable[[], None]
    done: threading.Event = field(default_factory=threading.Event)


Control = Literal["stop", "abort"]
Item = Inbound | Command | Control


def register_service_metrics(registry: CollectorRegistry, c: ServiceCounters, stats: WriterStats) -> None:
    """The service's totals as gauges in a metrics registry (the API's ``/metrics``)."""
    for name, doc, read in (
        ("smartward_ops_messages", "MQTT messages the ops service took (total)", lambda: c.messages),
        ("smartward_ops_messages_refused",
         "messages refused: outside the contract's bounds, undecodable, topic mismatch (total)",
         lambda: c.invalid),
        ("smartward_ops_messages_failed",
         "messages whose evaluation raised (a bug): logged, acknowledged, skipped (total)",
         lambda: c.failed),
        ("smartward_ops_store_rows_refused", "rows the database refused for good: skipped (total)",
         lambda: stats.refused),
        ("smartward_ops_loop_errors", "errors caught at the worker's loops (total)",
         lambda: c.loop_errors),
    ):
        Gauge(name, doc, registry=registry).set_function(read)
