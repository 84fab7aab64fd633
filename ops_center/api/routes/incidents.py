"""``/api/v1/incidents``: list, detail (member alerts and timeline), and people's actions
(acknowledge, resolve, notes, assign, escalate), each on the timeline and in the audit log."""

from __future__ import annotations

import logging
from typing import Annotated, Final, Literal

from fastapi import APIRouter, Path, Query, Request, Response

from contract.models import SLUG_PATTERN
from ops_center.adapters.records import IncidentRecord
from ops_center.api.deps import (
    AppState,
    IncidentsDep,
    ScopeDep,
    StateDep,
    app_state,
    client_ip,
    list_filter,
    require_action,
    require_visible,
)
from ops_center.api.errors import ERROR_RESPONSES, ApiError
from ops_center.api.notify_policy import resolved_notice_for
from ops_center.api.pages import Limit, Offset
from ops_center.api.schemas import (
    AcknowledgeIn,
    AlertOut,
    AssignIn,
    IncidentDetailOut,
    IncidentOut,
    IncidentPage,
    NoteIn,
    TimelineOut,
    incident_page_json,
)
from ops_center.domain.errors import InvalidTransition
from ops_center.domain.roles import Action
from ops_center.security.scope import Scope
from ops_center.service.actions import ActionName, HumanAction, mutation

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/incidents", tags=["incidents"], responses=ERROR_RESPONSES)

IncidentId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]
StateFilter = Literal["open", "acknowledged", "resolved"]
PERMISSION: Final[dict[ActionName, Action]] = {
    "acknowledge": "incident.acknowledge",
    "resolve": "incident.resolve",
    "note": "incident.note",
    "assign": "incident.assign",
    "escalate": "incident.escalate",
}


@router.get("", summary="Sự cố / incidents", response_model=IncidentPage)
async def list_incidents(
    request: Request,
    scope: ScopeDep,
    site: Annotated[str | None, Query(pattern=SLUG_PATTERN, max_length=63)] = None,
    incident_state: Annotated[StateFilter | None, Query(alias="state")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Response:
    # Every operations screen polls this. The site filter is narrowed to the scope on the
    # event loop; asking for a site outside it is audited (a write: in the pool). The page is
    # the shared answer of its query (ops_center/api/pagecache.py: keyed by the narrowed
    # sites, so never another scope's rows), or the query and its JSON in ONE trip to the
    # pool (a plain ``def`` route makes FastAPI hop there for the endpoint and again for the
    # response's serialization).
    state = app_state(request)
    sites = scope.narrow(site)
    if site is not None and not sites and site in state.registry.sites:
        await state.offload(list_filter, request, state, scope, site)

    def page() -> bytes:
        found = state.repo.incidents.list_incidents(sites, incident_state, limit, offset)
        return incident_page_json(found.items, total=found.total, limit=limit, offset=offset)

    async def compute() -> bytes:
        return await state.offload(page)

    body = await state.incident_pages.get((sites, incident_state, limit, offset), compute)
    return Response(body, media_type="application/json")


@router.get("/{incident_id}", summary="Chi tiết sự cố / incident with member alerts and timeline")
def get_incident(
    request: Request, state: StateDep, scope: ScopeDep, incidents: IncidentsDep, incident_id: IncidentId
) -> IncidentDetailOut:
    detail = incidents.get_incident(incident_id)
    require_visible(
        request,
        state,
        scope,
        detail.incident.site if detail else None,
        target=f"incident:{incident_id}",
        exists=detail is not None,
    )
    assert detail is not None
    base = IncidentOut.of(detail.incident)
    return IncidentDetailOut(
        **base.model_dump(),
        alerts=[AlertOut.of(a) for a in detail.alerts],
        timeline=[TimelineOut.of(e) for e in detail.timeline],
    )


def _act(
    request: Request,
    state: AppState,
    scope: Scope,
    incident_id: str,
    action: ActionName,
    note: str | None = None,
    assignee: str | None = None,
) -> IncidentOut:
    target = f"incident:{incident_id}"
    detail = state.repo.incidents.get_incident(incident_id)
    site = detail.incident.site if detail else None
    require_visible(request, state, scope, site, target=target, exists=detail is not None)
    require_action(request, state, scope, PERMISSION[action], target=target, site=site)
    if assignee is not None:
        user = state.repo.users.get_user(assignee)
        if (
            user is None
            or user.disabled
            or not Scope.for_user(user.name, user.role, user.sites, state.registry.sites).can_see(site)
        ):
            raise ApiError(422, "unknown_user", name=assignee)
    act = HumanAction(
        incident_id=incident_id,
        action=action,
        by=scope.user,
        at=state.now(),
        note=note,
        assignee=assignee,
        ip=client_ip(request),
    )
    # A resolve inserts its `resolved` notifications itself (issue #13): with the change, even
    # while the ops service is down.
    notice = resolved_notice_for(state, detail.alerts if detail else ()) if action == "resolve" else None
    try:
        updated = state.repo.incidents.apply_incident_action(incident_id, mutation(act, notice))
    except InvalidTransition as exc:
        state.audit(
            request,
            actor=scope.user,
            action=f"incident.{action}",
            outcome="failed",
            target=target,
            site=site,
            detail=f"state {exc.state}",
        )
        raise ApiError(409, "conflict", state=exc.state) from exc
    if updated is None:
        raise ApiError(404, "not_found")
    out = IncidentOut.of(updated)
    state.feed.publish(
        "incident",
        updated.site,
        {"action": action, "by": scope.user, "incident": updated},
    )
    _notify(state, act, updated)
    return out


def _notify(state: AppState, act: HumanAction, incident: IncidentRecord) -> None:
    if state.on_action is None:
        return
    try:
        state.on_action(act, incident)
    except Exception:  # the action is committed and audited; the service catches up on restart
        logger.exception("incident action hook failed for %s %s", act.action, act.incident_id)


@router.post("/{incident_id}/acknowledge", summary="Tiếp nhận sự cố / acknowledge")
def acknowledge(
    request: Request,
    state: StateDep,
    scope: ScopeDep,
    incident_id: IncidentId,
    body: AcknowledgeIn | None = None,
) -> IncidentOut:
    return _act(request, state, scope, incident_id, "acknowledge", note=body.note if body else None)


@router.post("/{incident_id}/resolve", summary="Đóng sự cố (bắt buộc ghi chú) / resolve (a note is required)")
def resolve(
    request: Request, state: StateDep, scope: ScopeDep, incident_id: IncidentId, body: NoteIn
) -> IncidentOut:
    return _act(request, state, scope, incident_id, "resolve", note=body.note)


@router.post("/{incident_id}/notes", summary="Ghi chú / add a note")
def add_note(
    request: Request, state: StateDep, scope: ScopeDep, incident_id: IncidentId, body: NoteIn
) -> IncidentOut:
    return _act(request, state, scope, incident_id, "note", note=body.note)


@router.post("/{incident_id}/assign", summary="Phân công / assign to a user")
def assign(
    request: Request, state: StateDep, scope: ScopeDep, incident_id: IncidentId, body: AssignIn
) -> IncidentOut:
    return _act(request, state, scope, incident_id, "assign", note=body.note, assignee=body.assignee)


@router.post("/{incident_id}/escalate", summary="Báo cáo lên cấp trên / escalate")
def escalate(
    request: Request,
    state: StateDep,
    scope: ScopeDep,
    incident_id: IncidentId,
    body: AcknowledgeIn | None = None,
) -> IncidentOut:
    return _act(request, state, scope, incident_id, "escalate", note=body.note if body else None)
