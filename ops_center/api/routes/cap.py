"""CAP 1.2 for incidents (ops_center/api/cap.py):

- ``GET /api/v1/incidents/{id}.cap``: the incident as a CAP ``alert`` (``application/cap+xml``);
- ``GET /api/v1/cap/{site}.atom``: the site's current warnings (open and acknowledged
  incidents, newest first, at most ``FEED_MAX``) as an Atom feed whose entries carry their
  CAP message.

Scoped like the rest of the API: an incident or a site the user does not see answers 404.
This router is registered before ``incidents``, whose ``/incidents/{id}`` would otherwise
take ``x.cap`` for an incident id.
"""

from __future__ import annotations

import re
from typing import Annotated, Final

from fastapi import APIRouter, Path, Request, Response

from contract.models import SLUG_PATTERN
from ops_center.adapters.records import IncidentDetail
from ops_center.api.cap import ATOM_MEDIA_TYPE, CAP_MEDIA_TYPE, atom_feed, cap_document
from ops_center.api.deps import AppState, IncidentsDep, ScopeDep, StateDep, require_visible
from ops_center.api.errors import ERROR_RESPONSES

router = APIRouter(tags=["cap"], responses=ERROR_RESPONSES)

FEED_MAX: Final = 100
IncidentId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]
SiteId = Annotated[str, Path(pattern=SLUG_PATTERN, max_length=63)]
_XML_STRING = {"schema": {"type": "string", "format": "xml"}}
_NOT_SENDER = re.compile(r"[\s,<&]")


def sender(state: AppState, request: Request) -> str:
    """CAP ``sender``: ``SMARTWARD_CAP_SENDER``, else ``smartward@<the host the API is reached at>``
    (no spaces, commas, '<' or '&': CAP 1.2 §3.2.1)."""
    value = state.settings.cap_sender or f"smartward@{request.url.hostname or 'localhost'}"
    return _NOT_SENDER.sub("", value) or "smartward"


@router.get(
    "/incidents/{incident_id}.cap",
    summary="Sự cố dạng CAP 1.2 / incident as a CAP 1.2 alert",
    response_class=Response,
    responses={200: {"description": "CAP 1.2 alert", "content": {CAP_MEDIA_TYPE: _XML_STRING}}},
)
async def incident_cap(
    request: Request, state: StateDep, scope: ScopeDep, incidents: IncidentsDep, incident_id: IncidentId
) -> Response:
    def render() -> bytes:
        detail = incidents.get_incident(incident_id)
        require_visible(request, state, scope, detail.incident.site if detail else None,
                        target=f"incident:{incident_id}", exists=detail is not None)
        assert detail is not None
        return cap_document(detail, state.registry, sender(state, request))

    return Response(await state.offload(render), media_type=CAP_MEDIA_TYPE)


@router.get(
    "/cap/{site}.atom",
    summary="Cảnh báo hiện hành của địa bàn (Atom, CAP 1.2) / a site's current warnings",
    response_class=Response,
    responses={200: {"description": "Atom feed of CAP 1.2 alerts",
                     "content": {ATOM_MEDIA_TYPE: _XML_STRING}}},
)
async def site_cap_feed(
    request: Request, state: StateDep, scope: ScopeDep, incidents: IncidentsDep, site: SiteId
) -> Response:
    def render() -> bytes:
        require_visible(request, state, scope, site, target=f"cap:{site}",
                        exists=site in state.registry.sites)
        current = [
            *incidents.list_incidents([site], "open", FEED_MAX, 0).items,
            *incidents.list_incidents([site], "acknowledged", FEED_MAX, 0).items,
        ]
        current.sort(key=lambda i: (i.updated_at, i.id), reverse=True)
        details: list[IncidentDetail] = []
        for inc in current[:FEED_MAX]:
            d = incidents.get_incident(inc.id)
            if d is not None:
                details.append(d)
        base = str(request.base_url).rstrip("/")
        return atom_feed(site, details, state.registry, sender(state, request), str(request.url),
                         base + "/api/v1/incidents/{id}.cap", state.now())

    return Response(await state.offload(render), media_type=ATOM_MEDIA_TYPE)
