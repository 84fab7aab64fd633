"""Login sessions and live-stream tickets in the store (tables ``sessions`` and
``stream_tickets``, migration 0005; issue #10, docs/security.md).

A **session** starts at each login and carries exactly one valid refresh token (its ``jti``).
Exchanging that token rotates it (the session now knows only the new one); presenting a refresh
token of the session that is not its current one is a *reuse* (a stolen copy, or the user's
own copy after a thief used it first): the whole session is revoked, its newest refresh token
with it. Logging out revokes it too. Access tokens name their session (``sid``); the API refuses
those of a revoked session once it re-reads the user's row (``principal_cache_s``).

A **stream ticket** is what ``EventSource`` sends instead of a token (it cannot set headers,
and a token in a URL ends up in logs and histories): random, stored only as its SHA-256, valid
``STREAM_TICKET_TTL_S`` and used at most once; a reconnect asks for a new one. The rows live in
the store, not in a process, so any API worker can redeem a ticket another one issued.

``SessionStore`` is the port, ``SqlSessionStore`` (ops_center/adapters/sql_sessions.py) runs
on the repository's own connections (as ``SqlCommandStore``), ``MemorySessionStore`` is the
fake. Every change is one conditional statement, so two workers racing on the same refresh
token cannot both win.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal, Protocol

RevokeReason = Literal["logout", "reuse"]
Rotation = Literal["rotated", "reused", "unknown"]
STREAM_TICKET_TTL_S = 30


@dataclass(frozen=True, slots=True)
class SessionRecord:
    id: str
    user: str
    refresh_jti: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None
    revoked_reason: RevokeReason | None = None


@dataclass(frozen=True, slots=True)
class StreamTicket:
    """What a redeemed ticket stands for: the access token it was issued against."""

    user: str
    session: str | None
    token_version: int
    access_expires_at: datetime


def ticket_hash(ticket: str) -> str:
    return hashlib.sha256(ticket.encode("utf-8", "surrogatepass")).hexdigest()


class SessionStore(Protocol):
    def start(self, session: SessionRecord) -> None: ...

    def rotate(self, session_id: str, presented_jti: str, new_jti: str, expires_at: datetime,
               now: datetime) -> Rotation:
        """``rotated`` when ``presented_jti`` was the session's current refresh token (now
        replaced by ``new_jti``); ``reused`` when it was not and the session is now revoked;
        ``unknown`` when there is no such live session (none, expired or revoked)."""
        ...

    def revoke(self, session_id: str, reason: RevokeReason, now: datetime) -> bool:
        """Revoke a live session; False when it was not live."""
        ...

    def revoked_for(self, user: str, now: datetime) -> frozenset[str]:
        """The ids of ``user``'s revoked sessions whose tokens could still be unexpired."""
        ...

    def add_ticket(self, ticket: str, grant: StreamTicket, expires_at: datetime, now: datetime) -> None: ...

    def redeem_ticket(self, ticket: str, now: datetime) -> StreamTicket | None:
        """The ticket's grant, once: None when unknown, expired or already used."""
        ...


class MemorySessionStore:
    def __init__(self) -> None:
        self._sessions: dict[str, SessionRecord] = {}
        self._tickets: dict[str, tuple[StreamTicket, datetime, bool]] = {}
        self._lock = threading.Lock()

    def start(self, session: SessionRecord) -> None:
        with self._lock:
            self._sessions[session.id] = session

    def rotate(self, session_id: str, presented_jti: str, new_jti: str, expires_at: datetime,
               now: datetime) -> Rotation:
        with self._lock:
            s = self._sessions.get(session_id)
            if s is None or s.revoked_at is not None or s.expires_at <= now:
                return "unknown"
            if s.refresh_jti != presented_jti:
                self._sessions[session_id] = replace(s, revoked_at=now, revoked_reason="reuse")
                return "reused"
            self._sessions[session_id] = replace(s, refresh_jti=new_jti, expires_at=expires_at)
            return "rotated"

    def revoke(self, session_id: str, reason: RevokeReason, now: datetime) -> bool:
        with self._lock:
            s = self._sessions.get(session_id)
            if s is None or s.revoked_at is not None:
                return False
            self._sessions[session_id] = replace(s, revoked_at=now, revoked_reason=reason)
            return True

    def revoked_for(self, user: str, now: datetime) -> frozenset[str]:
        with self._lock:
            return frozenset(s.id for s in self._sessions.values()
                             if s.user == user and s.revoked_at is not None and s.expires_at > now)

    def add_ticket(self, ticket: str, grant: StreamTicket, expires_at: datetime, now: datetime) -> None:
        with self._lock:
            self._tickets = {h: t for h, t in self._tickets.items() if t[1] > now}
            self._tickets[ticket_hash(ticket)] = (grant, expires_at, False)

    def redeem_ticket(self, ticket: str, now: datetime) -> StreamTicket | None:
        key = ticket_hash(ticket)
        with self._lock:
            found = self._tickets.get(key)
            if found is None or found[2] or found[1] <= now:
                return None
            self._tickets[key] = (found[0], found[1], True)
            return found[0]
