"""Notifications (issue #13): ``GET /api/v1/notifications?site=&incident=`` (scoped),
``GET /api/v1/contacts`` (admin), and the acknowledge link of a message,
``GET|POST /api/v1/ack/{token}``.

The acknowledge link needs no login: the signed token is the credential (bound to one
notification, so to one contact; short-lived; single use). ``GET`` shows the incident and one
button, and only ``POST`` acknowledges, so a mail scanner or a chat app's link preview that
fetches the URL changes nothing. The acknowledgement is audited as ``contact:<id>`` and goes
through the same path as a person's acknowledge on the screen (timeline, feed, ops service).
"""

from __future__ import annotations

import html
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Final

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from pydantic import BaseModel, ConfigDict

from contract.models import SLUG_PATTERN
from ops_center.adapters.factory import open_notification_store
from ops_center.adapters.notifications import NotificationStore
from ops_center.adapters.records import NotificationRecord
from ops_center.adapters.repository import OpsRepository, RepositoryError
from ops_center.api.deps import AdminScopeDep, AppState, ScopeDep, StateDep, client_ip, list_filter
from ops_center.api.errors import ERROR_RESPONSES, ApiError
from ops_center.api.notify_policy import policy as _policy
from ops_center.api.pages import Limit, Offset
from ops_center.api.schemas import IncidentOut
from ops_center.domain.errors import InvalidTransition
from ops_center.notify import acklink
from ops_center.notify.render import incident_link
from ops_center.service.actions import HumanAction, mutation

logger = logging.getLogger(__name__)
router = APIRouter(tags=["notifications"], responses=ERROR_RESPONSES)

Token = Annotated[str, PathParam(min_length=10, max_length=200, pattern=r"^[A-Za-z0-9._-]+$")]
_HTML: Final[dict[str, object]] = {"text/html": {"schema": {"type": "string"}}}
# The acknowledge pages are HTML for a phone's browser (the 422 of a malformed token stays JSON).
# The routes' response class is HTML, so the API's JSON errors are named here with their own
# media type (FastAPI would otherwise document them as text/html).
_JSON_ERROR: Final[dict[str, object]] = {
    "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}},
}
ACK_RESPONSES: Final[dict[int | str, dict[str, object]]] = {
    **{
        status: {"description": spec["description"], "content": _JSON_ERROR}
        for status, spec in ERROR_RESPONSES.items()
        if status not in (404, 410)
    },
    200: {"description": "Trang xác nhận / the page", "content": _HTML},
    404: {"description": "Liên kết không hợp lệ / link not valid", "content": _HTML},
    410: {"description": "Liên kết hết hạn hoặc đã dùng / link expired or used", "content": _HTML},
}
PAGE_CSP: Final = "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"


class NotificationOut(BaseModel):
    # Read from a NotificationRecord's attributes of the same names (one shape to keep in step).
    model_config = ConfigDict(frozen=True, from_attributes=True)

    id: str
    incident_id: str
    site: str
    contact: str
    channel: str
    reason: str
    state: str
    attempts: int
    created_at: datetime
    sent_at: datetime | None
    error: str | None

    @classmethod
    def of(cls, n: NotificationRecord) -> NotificationOut:
        return cls.model_validate(n)


class NotificationPage(BaseModel):
    items: list[NotificationOut]
    total: int
    limit: int
    offset: int


class ContactOut(BaseModel):
    id: str
    name: str
    sites: list[str]
    channels: list[str]
    email: str | None
    phone: str | None
    url: str | None


class ContactList(BaseModel):
    items: list[ContactOut]


def _store(state: AppState) -> NotificationStore:
    store = open_notification_store(state.repo)
    if store is None:
        raise ApiError(404, "not_found")
    return store


@router.get("/notifications", summary="Thông báo đã gửi / notifications")
def list_notifications(
    request: Request,
    state: StateDep,
    scope: ScopeDep,
    site: Annotated[str | None, Query(pattern=SLUG_PATTERN, max_length=63)] = None,
    incident: Annotated[
        str | None, Query(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")
    ] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> NotificationPage:
    sites = list_filter(request, state, scope, site)
    page = _store(state).list(sites, incident, limit, offset)
    return NotificationPage(
        items=[NotificationOut.of(n) for n in page.items], total=page.total, limit=limit, offset=offset
    )


@router.get("/contacts", summary="Người nhận thông báo / notification contacts (admin)")
def list_contacts(state: StateDep, _scope: AdminScopeDep) -> ContactList:
    policy = _policy(state)
    items = [
        ContactOut(
            id=c.id,
            name=c.name,
            sites=list(c.sites),
            channels=[ch for ch in ("email", "sms", "zalo", "webhook") if c.reaches(ch)],
            email=c.email,
            phone=c.phone,
            url=c.url,
        )
        for c in policy.contacts.values()
    ]
    return ContactList(items=items)


# --- the acknowledge link ---------------------------------------------------------------------------


def _page(status: int, title: str, lines: list[str], *, form: bool = False) -> HTMLResponse:
    body = "".join(f"<p>{html.escape(line)}</p>" for line in lines)
    button = (
        '<form method="post"><button type="submit">Xác nhận đã nhận sự cố / Acknowledge</button></form>'
        if form
        else ""
    )
    doc = (
        f'<!doctype html><html lang="vi"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title></head><body><h1>{html.escape(title)}</h1>{body}{button}</body></html>"
    )
    return HTMLResponse(
        doc,
        status_code=status,
        headers={
            "Content-Security-Policy": PAGE_CSP,
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
        },
    )


def _claim(state: AppState, token: str) -> tuple[NotificationRecord, NotificationStore] | HTMLResponse:
    try:
        claim = acklink.verify(state.settings.signing_key(), token, state.now())
    except acklink.AckLinkError as exc:
        gone = str(exc) == "expired"
        return _page(
            410 if gone else 404,
            "Liên kết không dùng được / Link not valid",
            [
                "Liên kết đã hết hạn." if gone else "Liên kết không hợp lệ.",
                "The link has expired." if gone else "The link is not valid.",
            ],
        )
    store = _store(state)
    row = store.get(claim.notification_id)
    if row is None:
        return _page(
            404,
            "Liên kết không dùng được / Link not valid",
            ["Không tìm thấy thông báo.", "No such notification."],
        )
    return row, store


def _incident_lines(state: AppState, row: NotificationRecord, public_url: str) -> list[str]:
    detail = state.repo.incidents.get_incident(row.incident_id)
    if detail is None:
        return []
    i = detail.incident
    return [f"{i.title_vi} / {i.title_en}", f"Trạng thái / state: {i.state}", incident_link(public_url, i.id)]


@router.get(
    "/ack/{token}",
    summary="Trang xác nhận từ tin nhắn / acknowledge page of a message",
    responses=ACK_RESPONSES,
    response_class=HTMLResponse,
)
def ack_page(state: StateDep, token: Token) -> HTMLResponse:
    found = _claim(state, token)
    if isinstance(found, HTMLResponse):
        return found
    row, _ = found
    public = state.settings.public_url
    if row.ack_used_at is not None:
        return _page(410, "Liên kết đã dùng / Link already used", _incident_lines(state, row, public))
    return _page(200, "Xác nhận sự cố / Acknowledge incident", _incident_lines(state, row, public), form=True)


@router.post(
    "/ack/{token}",
    summary="Xác nhận sự cố từ tin nhắn / acknowledge from a message",
    responses=ACK_RESPONSES,
    response_class=HTMLResponse,
)
def ack_from_message(request: Request, state: StateDep, token: Token) -> HTMLResponse:
    found = _claim(state, token)
    if isinstance(found, HTMLResponse):
        return found
    row, store = found
    public = state.settings.public_url
    if not store.use_ack(row.id, state.now()):
        return _page(410, "Liên kết đã dùng / Link already used", _incident_lines(state, row, public))
    actor = f"contact:{row.contact}"
    act = HumanAction(
        incident_id=row.incident_id,
        action="acknowledge",
        by=actor,
        at=state.now(),
        note=f"qua liên kết trong tin nhắn ({row.channel}) / via the link in the message",
        ip=client_ip(request),
    )
    try:
        updated = state.repo.incidents.apply_incident_action(row.incident_id, mutation(act))
    except InvalidTransition as exc:
        state.audit(
            request,
            actor=actor,
            action="incident.acknowledge",
            outcome="failed",
            target=f"incident:{row.incident_id}",
            site=row.site,
            detail=f"state {exc.state}",
        )
        return _page(
            200,
            "Sự cố đã được tiếp nhận / Already acknowledged",
            [f"Trạng thái hiện tại / current state: {exc.state}", *_incident_lines(state, row, public)],
        )
    if updated is None:
        return _page(
            404, "Liên kết không dùng được / Link not valid", ["Không tìm thấy sự cố.", "No such incident."]
        )
    state.feed.publish(
        "incident",
        updated.site,
        {"action": "acknowledge", "by": actor, "incident": IncidentOut.of(updated).model_dump(mode="json")},
    )
    if state.on_action is not None:
        try:
            state.on_action(act, updated)
        except Exception:  # committed and audited; the ops service catches up on restart
            logger.exception("incident action hook failed for the acknowledge link of %s", row.incident_id)
    return _page(
        200,
        "Đã xác nhận / Acknowledged",
        [
            f"Cảm ơn {row.contact}: sự cố đã được tiếp nhận, việc báo cấp trên dừng lại.",
            "Thank you: the incident is acknowledged; escalation stops.",
            *_incident_lines(state, row, public),
        ],
    )


# --- /metrics -----------------------------------------------------------------------------------------


class _OutboxCollector(Collector):
    def __init__(self, repo: OpsRepository) -> None:
        self.repo = repo

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "smartward_notifications", "notifications in the outbox by state", labels=["state"]
        )
        store = open_notification_store(self.repo)
        if store is not None:
            try:
                counts = store.counts()
            except RepositoryError:
                counts = {}
            for state_name, n in sorted(counts.items()):
                family.add_metric([state_name], n)
        yield family


def register_notification_metrics(registry: CollectorRegistry, repo: OpsRepository) -> None:
    """``smartward_notifications{state="pending|sent|failed"}`` (a failed one is a message
    that did not arrive after its last attempt: alert on it)."""
    registry.register(_OutboxCollector(repo))
