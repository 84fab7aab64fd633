"""The notification outbox (``notifications``, migration 0006): its port. The SQL for SQLite
and PostgreSQL: ops_center/adapters/sql_notifications.py.

Rows are created in the evaluation step's own transaction (``IncidentRepository.commit_step``)
or, for escalations, by the sender loop (:meth:`SqlNotificationStore.add`); both insert with
``ON CONFLICT DO NOTHING`` on the key (incident, contact, channel, reason), so a replay never
creates a second message. The sender reads what is due, and records every attempt: sent (with
a timeline entry on the incident, in the same transaction), or failed with the next attempt's
time, or failed for good.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from ops_center.adapters.records import (
    IncidentRecord,
    NotificationRecord,
    Page,
)
from ops_center.adapters.repository import Sites


@dataclass(frozen=True, slots=True)
class EscalationCandidate:
    """An open (unacknowledged) incident somebody was told of, its highest escalation step, and
    when the ops service opened it (its first-tier notification was created in the opening's
    transaction: wall time, where ``opened_at`` is reading time, which may lie in the past for
    data that arrives late or in the future of a simulated clock)."""

    incident: IncidentRecord
    step: int
    since: datetime


class NotificationStore(Protocol):
    def add(self, rows: Sequence[NotificationRecord]) -> int:
        """Insert new notifications (a stored key is left alone); how many were new."""

    def due(self, now: datetime, limit: int) -> list[NotificationRecord]:
        """Pending notifications whose next attempt is due, oldest first."""

    def next_due(self) -> datetime | None:
        """The earliest next attempt of a pending notification."""

    def postpone(self, rows: Sequence[NotificationRecord], until: datetime) -> None:
        """Not an attempt: the contact's rate window is full; look again at ``until``."""

    def claim(
        self, rows: Sequence[NotificationRecord], now: datetime, until: datetime
    ) -> list[NotificationRecord]:
        """Take ``rows`` for one attempt: each still pending and due is held until ``until``
        (another sender, e.g. a second ops process, skips it meanwhile; a sender that dies
        holding it lets it be retried then). The rows taken."""

    def deliveries_since(self, contact: str, channel: str, since: datetime) -> int:
        """Messages sent to ``contact`` on ``channel`` since ``since`` (a digest counts once)."""

    def mark_sent(self, rows: Sequence[NotificationRecord], at: datetime, delivery: str) -> None:
        """``rows`` went out in one message ``delivery``; each incident's timeline says so."""

    def mark_failed(
        self, row: NotificationRecord, at: datetime, error: str, next_attempt_at: datetime | None
    ) -> None:
        """An attempt failed: retried at ``next_attempt_at``, or failed for good when None."""

    def escalation_candidates(self) -> list[EscalationCandidate]: ...

    def list(
        self, sites: Sites, incident_id: str | None, limit: int, offset: int
    ) -> Page[NotificationRecord]: ...

    def get(self, notification_id: str) -> NotificationRecord | None: ...

    def use_ack(self, notification_id: str, at: datetime) -> bool:
        """Mark the acknowledge link of ``notification_id`` used; False when it already was."""

    def counts(self) -> dict[str, int]:
        """Notifications per state."""


__all__ = ["EscalationCandidate", "NotificationStore"]
