"""``GET /api/v1/stream``: Server-Sent Events (``alert``, ``incident``, ``gateway``, ``kpi``),
filtered by the user's scope, resumable with ``Last-Event-ID``. The feed carries records; they
are rendered here with the API's schemas (ops_center/api/render.py).

Each client reads from its own bounded subscription of the change feed
(ops_center/feed.py): a client too slow to keep up is dropped (the stream ends; the browser
reconnects with its Last-Event-ID and resumes from the ring buffer), never slowing the
others. The stream also ends when the access token expires, and when the user row no longer
backs it (disabled, password set, role or sites changed, session revoked), checked every
``max(principal_cache_s, 1 s)``: the client reconnects with a fresh token, so a disabled user's
stream outlives neither their token nor that bound.

Authentication: the ``Authorization`` header, or, for ``EventSource`` (which cannot set
headers), ``?ticket=`` from ``POST /api/v1/stream/ticket``: opaque, single use, valid 30 s, and
standing for the access token it was issued against (the stream ends when that token expires).
A token never travels in the URL (it would land in access logs, proxies and histories).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse

from contract.registry import Registry
from ops_center.adapters.sessions import STREAM_TICKET_TTL_S, StreamTicket
from ops_center.api.deps import AppState, PrincipalDep, StateDep, StreamPrincipalDep, principal_holds
from ops_center.api.errors import ERROR_RESPONSES
from ops_center.api.render import render_event
from ops_center.api.schemas import StreamTicketOut
from ops_center.feed import FeedEvent

router = APIRouter(tags=["stream"], responses=ERROR_RESPONSES)

RETRY_MS = 3000
RECHECK_MIN_S = 1.0  # the user row is re-checked at most this often per stream (principal_cache_s 0)


def format_event(e: FeedEvent, registry: Registry) -> str:
    """One SSE event; the feed's records rendered with the API's schemas (api/render.py)."""
    data = json.dumps(render_event(e, registry), ensure_ascii=False, default=str)
    return f"id: {e.id}\nevent: {e.kind}\ndata: {data}\n\n"


@router.post("/stream/ticket", summary="Vé mở luồng sự kiện / a single-use ticket for the live stream (30 s)")
async def stream_ticket(state: StateDep, principal: PrincipalDep) -> StreamTicketOut:
    ticket = secrets.token_urlsafe(32)
    claims = principal.claims
    grant = StreamTicket(user=principal.user.name, session=claims.sid, token_version=claims.ver,
                         access_expires_at=claims.exp)

    def add(s: AppState) -> None:
        now = s.now()
        s.sessions.add_ticket(ticket, grant, now + timedelta(seconds=STREAM_TICKET_TTL_S), now)

    await state.offload(add, state)
    return StreamTicketOut(ticket=ticket, expires_in=STREAM_TICKET_TTL_S)


@router.get(
    "/stream",
    summary="Luồng sự kiện trực tiếp / live events (SSE)",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": "text/event-stream",
        }
    },
)
async def stream(
    state: StateDep,
    principal: StreamPrincipalDep,
    last_event_id: Annotated[str | None, Header(max_length=64)] = None,
    resume_after: Annotated[
        str | None,
        Query(alias="last_event_id", max_length=64, pattern=r"^[A-Za-z0-9:._-]+$",
              description="As the Last-Event-ID header, for a new EventSource that resumes"),
    ] = None,
) -> StreamingResponse:
    scope = principal.scope
    feed = state.feed
    sub, replay = feed.subscribe(scope.can_see, last_event_id or resume_after)
    expires = principal.claims.exp
    keepalive_s = state.settings.stream_keepalive_s
    recheck_s = max(state.settings.principal_cache_s, RECHECK_MIN_S)
    sent = state.metrics.stream_events
    registry = state.registry

    async def events() -> AsyncIterator[str]:
        try:
            yield f"retry: {RETRY_MS}\n: smartward {feed.boot}\n\n"
            if replay.resync:
                yield f"event: resync\ndata: {json.dumps({'reason': 'history not available'})}\n\n"
            for e in replay.events:
                sent.inc()
                yield format_event(e, registry)
            checked = time.monotonic()
            while True:
                remaining = (expires - state.now()).total_seconds()
                if remaining <= 0:
                    yield 'event: reauth\ndata: {"reason": "token expired"}\n\n'
                    return
                if time.monotonic() - checked >= recheck_s:
                    checked = time.monotonic()
                    if not await principal_holds(state, principal.claims):
                        yield 'event: reauth\ndata: {"reason": "user changed"}\n\n'
                        return
                batch = await sub.next_batch(min(keepalive_s, remaining, recheck_s))
                if batch is None:
                    return  # dropped: too slow
                if not batch:
                    yield ": keep-alive\n\n"
                    continue
                for e in batch:
                    sent.inc()
                    yield format_event(e, registry)
        finally:
            sub.close()

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
