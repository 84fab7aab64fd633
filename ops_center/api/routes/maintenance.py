"""``/api/v1/maintenance``: maintenance windows per sensor, gateway or site (issue #4: they
suppress alerts and pause freshness checks, with who set them and why).

Who: ward staff and cluster managers for their own sites, admins anywhere; city leaders read
but may not set or end one (403). A target of another site answers 404 (as any scoped
resource), an id that is not in the registry 422. Setting and ending are audited and published
on the live stream as ``maintenance`` events; the ops service of the same process re-reads the
windows on that event, before the next message it evaluates (a separate service process within
``ops_maintenance_refresh_s``).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from contract.models import SLUG_PATTERN
from contract.registry import Registry
from ops_center.adapters.records import MaintenanceWindowRecord
from ops_center.api.deps import (
    AppState,
    MaintenanceDep,
    ScopeDep,
    StateDep,
    list_filter,
    require_action,
    require_visible,
)
from ops_center.api.errors import ERROR_RESPONSES, ApiError
from ops_center.api.pages import Limit, Offset
from ops_center.api.schemas import MaintenanceIn, MaintenanceOut, MaintenancePage, MaintenanceScope
from ops_center.security.scope import Scope

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/maintenance", tags=["maintenance"], responses=ERROR_RESPONSES)

WindowId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]


def target_site(registry: Registry, scope: MaintenanceScope, target: str) -> str | None:
    """The site of a window's target; None when the registry has no such sensor/gateway/site."""
    if scope == "site":
        return target if target in registry.sites else None
    if scope == "gateway":
        return registry.site_of(target)
    ref = registry.sensors.get(target)
    return ref.site if ref is not None else None


def _utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError) as exc:  # year 1 at +14:00, year 9999 at -12:00
        raise ApiError(422, "range_invalid") from exc


@router.get("", summary="Lịch bảo trì / maintenance windows", response_model=MaintenancePage)
def list_windows(
    request: Request,
    state: StateDep,
    scope: ScopeDep,
    windows: MaintenanceDep,
    site: Annotated[str | None, Query(pattern=SLUG_PATTERN, max_length=63)] = None,
    active: Annotated[
        bool | None, Query(description="true: in force now; false: ended or not started; none: all")
    ] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> MaintenancePage:
    sites = list_filter(request, state, scope, site)
    now = state.now()
    rows = windows.list_maintenance(sites, now if active else None)
    items = [MaintenanceOut.of(w, now) for w in rows]
    if active is False:
        items = [w for w in items if not w.active]
    items.sort(key=lambda w: (w.start, w.id), reverse=True)  # newest first, as every list
    return MaintenancePage(items=items[offset : offset + limit], total=len(items), limit=limit, offset=offset)


@router.post("", status_code=201, summary="Đặt lịch bảo trì / set a maintenance window")
def set_window(
    request: Request, state: StateDep, scope: ScopeDep, windows: MaintenanceDep, body: MaintenanceIn
) -> MaintenanceOut:
    what = f"{body.scope}:{body.target}"
    site = target_site(state.registry, body.scope, body.target)
    if site is None:
        raise ApiError(422, "unknown_target", scope=body.scope, target=body.target)
    require_visible(request, state, scope, site, target=what)
    require_action(request, state, scope, "maintenance.set", target=what, site=site)
    now = state.now()
    start = _utc(body.start) if body.start is not None else now
    end = _utc(body.end) if body.end is not None else None
    if end is not None and end <= start:
        raise ApiError(422, "range_invalid")
    window = MaintenanceWindowRecord(
        id=f"mw-{secrets.token_hex(8)}",
        site=site,
        scope=body.scope,
        target=body.target,
        starts_at=start,
        ends_at=end,
        set_by=scope.user,
        reason=body.reason,
    )
    windows.upsert_maintenance(window)
    out = MaintenanceOut.of(window, now)
    until = end.isoformat() if end is not None else "open"
    _record(request, state, scope, "maintenance.set", out,
            detail=f"{what} from {start.isoformat()} until {until}: {body.reason}")
    return out


@router.delete("/{window_id}", summary="Kết thúc lịch bảo trì ngay / end a maintenance window now")
def end_window(
    request: Request, state: StateDep, scope: ScopeDep, windows: MaintenanceDep, window_id: WindowId
) -> MaintenanceOut:
    target = f"maintenance:{window_id}"
    window = windows.get_maintenance(window_id)
    site = window.site if window is not None else None
    require_visible(request, state, scope, site, target=target, exists=window is not None)
    assert window is not None
    require_action(request, state, scope, "maintenance.set", target=target, site=site)
    now = state.now()
    if window.ends_at is not None and window.ends_at <= now:
        state.audit(request, actor=scope.user, action="maintenance.end", outcome="failed", target=target,
                    site=site, detail="already ended")
        raise ApiError(409, "maintenance_ended", id=window_id)
    # A window that has not started yet is cancelled: it ends where it would have begun.
    ended = replace(window, ends_at=max(now, window.starts_at))
    windows.upsert_maintenance(ended)
    out = MaintenanceOut.of(ended, now)
    _record(request, state, scope, "maintenance.end", out, detail=f"{window.scope}:{window.target}")
    return out


def _record(request: Request, state: AppState, scope: Scope, action: str, out: MaintenanceOut, *,
            detail: str) -> None:
    """The audit entry and the live-stream event of a committed change."""
    state.audit(request, actor=scope.user, action=action, outcome="ok", target=f"maintenance:{out.id}",
                site=out.site, detail=detail)
    verb = "set" if action == "maintenance.set" else "ended"
    state.feed.publish("maintenance", out.site,
                       {"action": verb, "by": scope.user, "maintenance": out.model_dump(mode="json")})
