"""People's actions on an incident (acknowledge, resolve, note, assign, escalate) as the store
records them: :func:`mutation` runs inside the repository's transaction
(``IncidentRepository.apply_incident_action``) and writes, with the incident's new lifecycle, its
timeline event, its audit entry and, for a resolve, the ``resolved`` notifications (the outbox,
issue #13: created with the change, even while the ops service is down).

The lifecycle itself is ops_center/domain/lifecycle.py's (:func:`next_state`): the same
function the incident manager uses. After the commit, the route tells the ops service
(:data:`ActionHook`, ``OpsService.on_action``), which adopts what the store holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from ops_center.adapters.records import AuditEntry, IncidentRecord, ResolvedNotice, TimelineEvent
from ops_center.adapters.repository import IncidentUpdate
from ops_center.domain.lifecycle import TIMELINE_ACTION, HumanActionName, next_state

ActionName = HumanActionName


@dataclass(frozen=True, slots=True)
class HumanAction:
    incident_id: str
    action: ActionName
    by: str
    at: datetime
    note: str | None = None
    assignee: str | None = None
    ip: str | None = None


ActionHook = Callable[[HumanAction, IncidentRecord], None]
# The ``resolved`` notice of an incident as it is being resolved (None: nobody to tell).
ResolvedNoticeFor = Callable[[IncidentRecord], ResolvedNotice | None]

def transition(incident: IncidentRecord, act: HumanAction) -> IncidentRecord:
    """The stored incident after ``act``; raises ``InvalidTransition`` when the lifecycle
    forbids it (ops_center/domain/lifecycle.py)."""
    i = incident
    state = next_state(i.state, TIMELINE_ACTION[act.action])
    if act.action == "acknowledge":
        return replace(i, state=state, acknowledged_at=act.at, updated_at=act.at)
    if act.action == "resolve":
        return replace(i, state=state, resolved_at=act.at, updated_at=act.at)
    if act.action == "assign":
        return replace(i, assignee=act.assignee, updated_at=act.at)
    if act.action == "escalate":
        return replace(i, escalated_at=i.escalated_at or act.at, updated_at=act.at)
    return replace(i, updated_at=max(i.updated_at, act.at))  # note: any state


def mutation(
    act: HumanAction, notice: ResolvedNoticeFor | None = None
) -> Callable[[IncidentRecord], IncidentUpdate]:
    """The repository's mutation for ``act``. A resolve with ``notice`` also inserts the
    ``resolved`` notifications in the same transaction."""

    def mutate(current: IncidentRecord) -> IncidentUpdate:
        updated = transition(current, act)
        detail = act.note
        if act.action == "assign":
            detail = f"→ {act.assignee}" + (f": {act.note}" if act.note else "")
        event = TimelineEvent(
            incident_id=current.id,
            site=current.site,
            at=act.at,
            actor=act.by,
            action=TIMELINE_ACTION[act.action],
            detail=detail,
        )
        audit = AuditEntry(
            at=act.at,
            actor=act.by,
            action=f"incident.{act.action}",
            outcome="ok",
            target=f"incident:{current.id}",
            site=current.site,
            ip=act.ip,
            detail=f"{current.state} → {updated.state}" + (f"; {detail}" if detail else ""),
        )
        found = notice(updated) if notice is not None and act.action == "resolve" else None
        return IncidentUpdate(updated, (event,), audit, () if found is None else (found,))

    return mutate
