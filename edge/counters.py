"""What the agent counts, and the snapshot it shows (``--stats``, tests, benchmarks)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edge.outbox import OutboxStats


@dataclass(slots=True)
class Counters:
    """Totals since the agent started. Owned by the agent's thread."""

    readings: int = 0  # read from the driver
    batches_created: int = 0  # sealed and stored in the outbox
    batches_split: int = 0  # extra batches made by splitting an oversize one
    batches_sent: int = 0  # PUBLISHes handed to the client, re-sends included
    batches_resent: int = 0  # of which: a seq this process had sent before
    batches_published: int = 0  # PUBACKs with success
    batches_refused: int = 0  # PUBACKs with an MQTT 5 failure reason (>= 0x80)
    batches_acked: int = 0  # deleted from the outbox under the ack watermark
    batches_dropped: int = 0  # dropped by the outbox cap in this process
    readings_dropped: int = 0
    resend_rounds: int = 0  # times the ack timeout rewound the sending
    connects: int = 0
    reconnects: int = 0  # connects after the first
    connect_failures: int = 0
    disconnects: int = 0
    link_downs: int = 0
    bad_acks: int = 0
    status_published: int = 0
    driver_errors: int = 0
    clock_untrusted_polls: int = 0  # polls while the clock could not be trusted (edge.clockguard)
    readings_restamped: int = 0  # readings held then, stamped once the clock was good
    commands_received: int = 0  # messages on our cmd topic, redeliveries included
    commands_applied: int = 0  # applied by the driver
    commands_rejected: int = 0  # answered ok=false (bad payload, expired, unknown sensor...)
    commands_duplicate: int = 0  # redeliveries of an id already answered
    command_results_published: int = 0
    command_results_dropped: int = 0  # waiting for a connection past the cap


@dataclass(frozen=True, slots=True)
class EdgeStats:
    gateway: str
    at: datetime  # clock time of the snapshot
    connected: bool
    link_up: bool
    watermark: int
    inflight: int
    counters: Counters
    outbox: OutboxStats

    def as_dict(self) -> dict[str, Any]:
        o = self.outbox
        return {
            "gateway": self.gateway,
            "at": self.at.isoformat(),
            "connected": self.connected,
            "link_up": self.link_up,
            "watermark": self.watermark,
            "inflight": self.inflight,
            **dataclasses.asdict(self.counters),
            "last_seq": o.last_seq,
            "outbox_batches": o.batches,
            "outbox_bytes": o.bytes,
            "outbox_oldest": o.oldest.isoformat() if o.oldest else None,
            "dropped_batches_total": o.dropped_batches,
            "dropped_readings_total": o.dropped_readings,
            "dropped_through": o.dropped_through,
        }
