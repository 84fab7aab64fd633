"""Admin-only reads: ``/dead-letters?site=``, ``/audit``, ``/security-events?site=``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from contract.models import SLUG_PATTERN
from ops_center.api.deps import AdminScopeDep, GatewaysDep, SecurityEventsDep, StateDep, UsersDep, list_filter
from ops_center.api.errors import ERROR_RESPONSES
from ops_center.api.pages import Limit, Offset
from ops_center.api.schemas import (
    AuditOut,
    AuditPage,
    DeadLetterOut,
    DeadLetterPage,
    SecurityEventOut,
    SecurityEventPage,
)

router = APIRouter(tags=["admin"], responses=ERROR_RESPONSES)
SiteQuery = Annotated[str | None, Query(pattern=SLUG_PATTERN, max_length=63)]


@router.get("/dead-letters", summary="Bản tin lỗi / dead letters (admin)")
def dead_letters(
    request: Request,
    state: StateDep,
    scope: AdminScopeDep,
    gateways: GatewaysDep,
    site: SiteQuery = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> DeadLetterPage:
    page = gateways.dead_letters(list_filter(request, state, scope, site), limit, offset)
    return DeadLetterPage(
        items=[DeadLetterOut.of(d) for d in page.items], total=page.total, limit=limit, offset=offset
    )


@router.get("/audit", summary="Nhật ký kiểm toán / audit log (admin)")
def audit(scope: AdminScopeDep, users: UsersDep, limit: Limit = 50, offset: Offset = 0) -> AuditPage:
    page = users.audit_entries(limit, offset)
    return AuditPage(items=[AuditOut.of(a) for a in page.items], total=page.total, limit=limit, offset=offset)


@router.get("/security-events", summary="Sự kiện an ninh / security events (admin)")
def security_events(
    request: Request,
    state: StateDep,
    scope: AdminScopeDep,
    events: SecurityEventsDep,
    site: SiteQuery = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> SecurityEventPage:
    page = events.security_events(list_filter(request, state, scope, site), limit, offset)
    return SecurityEventPage(
        items=[SecurityEventOut.of(e) for e in page.items], total=page.total, limit=limit, offset=offset
    )
