"""Writing the notification outbox (migration 0006) inside another write's transaction: an
evaluation step (``SqlIncidentRepository.commit_step``) or a person's resolve
(``apply_incident_action``), issue #13. Reading and delivering it: ops_center/adapters/
notifications.py."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from ops_center.adapters.records import NotificationRecord, ResolvedNotice, notification_id
from ops_center.adapters.sql_base import Executor, SqlDatabase

NOTIFICATION_COLS: Final = (
    "id, incident_id, site, contact, channel, reason, step, state, attempts, created_at, "
    "next_attempt_at, last_attempt_at, sent_at, error, subject, body, delivery, ack_used_at"
)


def insert_notifications(db: SqlDatabase, x: Executor, rows: Sequence[NotificationRecord]) -> int:
    """Insert new notifications; a key already stored (a replay) is left as it is."""
    new = 0
    for n in rows:
        row = x.one(
            f"INSERT INTO notifications ({NOTIFICATION_COLS}) VALUES "
            "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT DO NOTHING RETURNING id",
            (n.id, n.incident_id, n.site, n.contact, n.channel, n.reason, n.step, n.state, n.attempts,
             db._t(n.created_at), db._t(n.next_attempt_at), db._tn(n.last_attempt_at),
             db._tn(n.sent_at), n.error, n.subject, n.body, n.delivery, db._tn(n.ack_used_at)),
        )
        new += row is not None
    return new


def insert_resolved(db: SqlDatabase, x: Executor, r: ResolvedNotice) -> int:
    """Whoever was told of the incident (on each channel) is told it is resolved."""
    pairs = x.rows(
        "SELECT DISTINCT contact, channel FROM notifications WHERE incident_id = %s "
        "AND reason <> 'resolved' ORDER BY contact, channel",
        (r.incident_id,),
    )
    return insert_notifications(db, x, [
        NotificationRecord(
            id=notification_id(r.incident_id, c, ch, "resolved"), incident_id=r.incident_id, site=r.site,
            contact=c, channel=ch, reason="resolved", state="pending", created_at=r.at,
            next_attempt_at=r.at, subject=r.subject, body=r.body)
        for c, ch in pairs
    ])
