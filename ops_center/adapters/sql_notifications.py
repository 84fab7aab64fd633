"""``SqlNotificationStore``: the notification outbox (``notifications``, migration 0006) on the
ops store's own connections (SQLite or PostgreSQL; the port and its rules:
ops_center/adapters/notifications.py)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ops_center.adapters.notifications import EscalationCandidate
from ops_center.adapters.ports import Sites
from ops_center.adapters.records import NotificationRecord, Page, TimelineEvent
from ops_center.adapters.sql_base import Row, SqlDatabase, page_rows, utc, utc_or_none
from ops_center.adapters.sql_incidents import INCIDENT_COLS, append_timeline, incident_record
from ops_center.adapters.sql_outbox import NOTIFICATION_COLS, insert_notifications


def _record(r: Row) -> NotificationRecord:
    return NotificationRecord(
        id=r[0],
        incident_id=r[1],
        site=r[2],
        contact=r[3],
        channel=r[4],
        reason=r[5],
        step=int(r[6]),
        state=r[7],
        attempts=int(r[8]),
        created_at=utc(r[9]),
        next_attempt_at=utc(r[10]),
        last_attempt_at=utc_or_none(r[11]),
        sent_at=utc_or_none(r[12]),
        error=r[13],
        subject=r[14],
        body=r[15],
        delivery=r[16],
        ack_used_at=utc_or_none(r[17]),
    )


def _error_text(error: str) -> str:
    return error[:1000]


class SqlNotificationStore:
    def __init__(self, repo: SqlDatabase) -> None:
        self._repo = repo

    def add(self, rows: Sequence[NotificationRecord]) -> int:
        with self._repo._tx() as x:
            return insert_notifications(self._repo, x, rows)

    def due(self, now: datetime, limit: int) -> list[NotificationRecord]:
        r = self._repo
        with r._read() as x:
            rows = x.rows(
                f"SELECT {NOTIFICATION_COLS} FROM notifications WHERE state = 'pending' "
                "AND next_attempt_at <= %s ORDER BY created_at, id LIMIT %s",
                (r._t(now), limit),
            )
        return [_record(row) for row in rows]

    def postpone(self, rows: Sequence[NotificationRecord], until: datetime) -> None:
        r = self._repo
        with r._tx() as x:
            for n in rows:
                x.run(
                    "UPDATE notifications SET next_attempt_at = %s WHERE id = %s AND state = 'pending'",
                    (r._t(until), n.id),
                )

    def claim(
        self, rows: Sequence[NotificationRecord], now: datetime, until: datetime
    ) -> list[NotificationRecord]:
        r = self._repo
        taken: list[NotificationRecord] = []
        with r._tx() as x:
            for n in rows:
                row = x.one(
                    "UPDATE notifications SET next_attempt_at = %s "
                    "WHERE id = %s AND state = 'pending' AND next_attempt_at <= %s RETURNING id",
                    (r._t(until), n.id, r._t(now)),
                )
                if row is not None:
                    taken.append(n)
        return taken

    def next_due(self) -> datetime | None:
        with self._repo._read() as x:
            row = x.one("SELECT min(next_attempt_at) FROM notifications WHERE state = 'pending'")
        return None if row is None else utc_or_none(row[0])

    def deliveries_since(self, contact: str, channel: str, since: datetime) -> int:
        r = self._repo
        with r._read() as x:
            row = x.one(
                "SELECT count(DISTINCT delivery) FROM notifications WHERE contact = %s AND channel = %s "
                "AND state = 'sent' AND sent_at >= %s",
                (contact, channel, r._t(since)),
            )
        return int(row[0]) if row is not None else 0

    def mark_sent(self, rows: Sequence[NotificationRecord], at: datetime, delivery: str) -> None:
        r = self._repo
        with r._tx() as x:
            for n in rows:
                updated = x.one(
                    "UPDATE notifications SET state = 'sent', attempts = attempts + 1, last_attempt_at = %s, "
                    "sent_at = %s, delivery = %s, error = NULL "
                    "WHERE id = %s AND state = 'pending' RETURNING id",
                    (r._t(at), r._t(at), delivery, n.id),
                )
                if updated is None:
                    continue
                digest = "" if delivery == n.id else f", digest {delivery}"
                append_timeline(
                    r,
                    x,
                    TimelineEvent(
                        id=None,
                        incident_id=n.incident_id,
                        site=n.site,
                        at=at,
                        actor=f"notify:{n.channel}",
                        action="notified",
                        detail=f"{n.contact} ({n.reason}{digest})",
                    ),
                )

    def mark_failed(
        self, row: NotificationRecord, at: datetime, error: str, next_attempt_at: datetime | None
    ) -> None:
        r = self._repo
        state = "pending" if next_attempt_at is not None else "failed"
        with r._tx() as x:
            x.run(
                "UPDATE notifications SET state = %s, attempts = attempts + 1, last_attempt_at = %s, "
                "next_attempt_at = %s, error = %s WHERE id = %s AND state = 'pending'",
                (state, r._t(at), r._t(next_attempt_at or at), _error_text(error), row.id),
            )
            if next_attempt_at is None:
                append_timeline(
                    r,
                    x,
                    TimelineEvent(
                        id=None,
                        incident_id=row.incident_id,
                        site=row.site,
                        at=at,
                        actor=f"notify:{row.channel}",
                        action="notify_failed",
                        detail=f"{row.contact} ({row.reason}): {_error_text(error)[:200]}",
                    ),
                )

    def escalation_candidates(self) -> list[EscalationCandidate]:
        cols = ", ".join(f"i.{c.strip()}" for c in INCIDENT_COLS.split(","))
        with self._repo._read() as x:
            rows = x.rows(
                f"SELECT {cols}, (SELECT max(n.step) FROM notifications n WHERE n.incident_id = i.id), "
                "(SELECT min(f.created_at) FROM notifications f WHERE f.incident_id = i.id "
                "AND f.reason IN ('opened', 'severity')) AS told_at "
                "FROM incidents i WHERE i.state = 'open' AND EXISTS (SELECT 1 FROM notifications f "
                "WHERE f.incident_id = i.id AND f.reason IN ('opened', 'severity')) ORDER BY i.opened_at"
            )
        return [
            EscalationCandidate(incident_record(row[:-2]), int(row[-2] or 0), utc(row[-1]))
            for row in rows
        ]

    def list(
        self, sites: Sites, incident_id: str | None, limit: int, offset: int
    ) -> Page[NotificationRecord]:
        r = self._repo
        where = r._site_where(sites)
        if where is None:
            return Page([], 0)
        clause, params = where
        if incident_id is not None:
            clause += " AND incident_id = %s"
            params.append(incident_id)
        with r._read() as x:
            rows, total = page_rows(
                x, NOTIFICATION_COLS, "notifications", clause, params, "created_at DESC, id", limit, offset
            )
        return Page([_record(row) for row in rows], total)

    def get(self, notification_id: str) -> NotificationRecord | None:
        with self._repo._read() as x:
            row = x.one(f"SELECT {NOTIFICATION_COLS} FROM notifications WHERE id = %s", (notification_id,))
        return None if row is None else _record(row)

    def use_ack(self, notification_id: str, at: datetime) -> bool:
        r = self._repo
        with r._tx() as x:
            row = x.one(
                "UPDATE notifications SET ack_used_at = %s "
                "WHERE id = %s AND ack_used_at IS NULL RETURNING id",
                (r._t(at), notification_id),
            )
        return row is not None

    def counts(self) -> dict[str, int]:
        with self._repo._read() as x:
            rows = x.rows("SELECT state, count(*) FROM notifications GROUP BY state")
        out = {"pending": 0, "sent": 0, "failed": 0}
        out.update({str(s): int(n) for s, n in rows})
        return out
