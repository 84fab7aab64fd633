"""``GET /api/v1/alerts?site=&state=``."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from contract.models import SLUG_PATTERN
from ops_center.api.deps import IncidentsDep, ScopeDep, StateDep, list_filter
from ops_center.api.errors import ERROR_RESPONSES
from ops_center.api.pages import Limit, Offset
from ops_center.api.schemas import AlertOut, AlertPage

router = APIRouter(tags=["alerts"], responses=ERROR_RESPONSES)


@router.get("/alerts", summary="Cảnh báo / alerts")
def list_alerts(
    request: Request,
    state: StateDep,
    scope: ScopeDep,
    incidents: IncidentsDep,
    site: Annotated[str | None, Query(pattern=SLUG_PATTERN, max_length=63)] = None,
    alert_state: Annotated[Literal["active", "cleared"] | None, Query(alias="state")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> AlertPage:
    sites = list_filter(request, state, scope, site)
    page = incidents.list_alerts(sites, alert_state, limit, offset)
    return AlertPage(items=[AlertOut.of(a) for a in page.items], total=page.total, limit=limit, offset=offset)
