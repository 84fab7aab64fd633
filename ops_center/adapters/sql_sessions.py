"""``SqlSessionStore``: login sessions and stream tickets (``sessions``, ``stream_tickets``,
migration 0005) on the ops store's own connections, so any API worker can redeem a ticket
another one issued. The port, its rules and the fake: ops_center/adapters/sessions.py."""

from __future__ import annotations

from datetime import datetime, timedelta

from ops_center.adapters.sessions import RevokeReason, Rotation, SessionRecord, StreamTicket, ticket_hash
from ops_center.adapters.sql_base import Row, SqlDatabase, utc

_KEEP_REVOKED = timedelta(days=31)  # revoked sessions kept this long past expiry, then purged


class SqlSessionStore:
    def __init__(self, repo: SqlDatabase) -> None:
        self._repo = repo

    def start(self, session: SessionRecord) -> None:
        s, r = session, self._repo
        with r._tx() as x:
            # Housekeeping on the rare path (a login): sessions long expired go.
            x.run("DELETE FROM sessions WHERE expires_at < %s", (r._t(s.created_at - _KEEP_REVOKED),))
            x.run(
                "INSERT INTO sessions (id, user_name, refresh_jti, created_at, expires_at) "
                "VALUES (%s, %s, %s, %s, %s)",
                (s.id, s.user, s.refresh_jti, r._t(s.created_at), r._t(s.expires_at)),
            )

    def rotate(self, session_id: str, presented_jti: str, new_jti: str, expires_at: datetime,
               now: datetime) -> Rotation:
        r = self._repo
        with r._tx() as x:
            row = x.one(
                "UPDATE sessions SET refresh_jti = %s, expires_at = %s "
                "WHERE id = %s AND refresh_jti = %s AND revoked_at IS NULL AND expires_at > %s RETURNING id",
                (new_jti, r._t(expires_at), session_id, presented_jti, r._t(now)),
            )
            if row is not None:
                return "rotated"
            # Not the current token of a live session: if the session is live, this is a
            # reuse (or the loser of a race with a legitimate exchange): revoke it.
            row = x.one(
                "UPDATE sessions SET revoked_at = %s, revoked_reason = 'reuse' "
                "WHERE id = %s AND revoked_at IS NULL AND expires_at > %s RETURNING id",
                (r._t(now), session_id, r._t(now)),
            )
        return "reused" if row is not None else "unknown"

    def revoke(self, session_id: str, reason: RevokeReason, now: datetime) -> bool:
        r = self._repo
        with r._tx() as x:
            row = x.one(
                "UPDATE sessions SET revoked_at = %s, revoked_reason = %s "
                "WHERE id = %s AND revoked_at IS NULL RETURNING id",
                (r._t(now), reason, session_id),
            )
        return row is not None

    def revoked_for(self, user: str, now: datetime) -> frozenset[str]:
        r = self._repo
        with r._read() as x:
            rows = x.rows(
                "SELECT id FROM sessions WHERE user_name = %s AND revoked_at IS NOT NULL AND expires_at > %s",
                (user, r._t(now)),
            )
        return frozenset(str(row[0]) for row in rows)

    def add_ticket(self, ticket: str, grant: StreamTicket, expires_at: datetime, now: datetime) -> None:
        r, g = self._repo, grant
        with r._tx() as x:
            x.run("DELETE FROM stream_tickets WHERE expires_at < %s", (r._t(now),))
            x.run(
                "INSERT INTO stream_tickets (ticket_hash, user_name, session_id, token_version, "
                "access_expires_at, expires_at) VALUES (%s, %s, %s, %s, %s, %s)",
                (ticket_hash(ticket), g.user, g.session, g.token_version, r._t(g.access_expires_at),
                 r._t(expires_at)),
            )

    def redeem_ticket(self, ticket: str, now: datetime) -> StreamTicket | None:
        r = self._repo
        with r._tx() as x:
            row = x.one(
                "UPDATE stream_tickets SET used_at = %s "
                "WHERE ticket_hash = %s AND used_at IS NULL AND expires_at > %s "
                "RETURNING user_name, session_id, token_version, access_expires_at",
                (r._t(now), ticket_hash(ticket), r._t(now)),
            )
        return None if row is None else _grant(row)


def _grant(row: Row) -> StreamTicket:
    return StreamTicket(user=row[0], session=row[1], token_version=int(row[2]), access_expires_at=utc(row[3]))
