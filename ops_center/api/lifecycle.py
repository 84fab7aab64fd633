"""People's actions on an incident: acknowledge, resolve (a note is required), note, assign,
escalate. Pure transitions here; the route runs them inside the repository's transaction
(``apply_incident_action``) together with the timeline event, the audit entry and, for a
resolve, the ``resolved`` notifications (the outbox, issue #13).

The ops service's incident manager keeps its own in-memory lifecycle; ``ActionHook`` (given
to ``create_app`` by the composition root) tells it about each action after the commit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final, Literal

from ops_center.adapters.records import AuditEntry, IncidentRecord, ResolvedNotice, TimelineEvent
from ops_center.adapters.repository import IncidentUpdate
from ops_center.security.roles import Action

ActionName = Literal["acknowledge", "resolve", "note", "assign", "escalate"]

PERMISSION: Final[dict[ActionName, Action]] = {
    "acknowledge": "incident.acknowledge",
    "resolve": "incident.resolve",
    "note": "incident.note",
    "assign": "incident.assign",
    "escalate": "incident.escalate",
}
# The timeline's vocabulary (ops_center/domain/incidents.py IncidentAction, plus "assigned").
TIMELINE_ACTION: Final[dict[ActionName, str]] = {
    "acknowledge": "acknowledged",
    "resolve": "resolved",
    "note": "annotated",
    "assign": "assigned",
    "escalate": "escalated",
}


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


class InvalidState(Exception):
    def __init__(self, state: str) -> None:
        super().__init__(state)
        self.state = state


def transition(incident: IncidentRecord, act: HumanAction) -> IncidentRecord:
    """The incident after ``act``; raises ``InvalidState`` when the lifecycle forbids it."""
    i = incident
    if act.action == "acknowledge":
        if i.state != "open":
            raise InvalidState(i.state)
        return replace(i, state="acknowledged", acknowledged_at=act.at, updated_at=act.at)
    if act.action == "resolve":
        if i.state == "resolved":
            raise InvalidState(i.state)
        return replace(i, state="resolved", resolved_at=act.at, updated_at=act.at)
    if act.action == "assign":
        if i.state == "resolved":
            raise InvalidState(i.state)
        return replace(i, assignee=act.assignee, updated_at=act.at)
    if act.action == "escalate":
        if i.state == "resolved":
            raise InvalidState(i.state)
        return replace(i, escalated_at=i.escalated_at or act.at, updated_at=act.at)
    return replace(i, updated_at=max(i.updated_at, act.at))  # note: any state


def mutation(
    act: HumanAction, notice: ResolvedNoticeFor | None = None
) -> Callable[[IncidentRecord], IncidentUpdate]:
    """The repository's mutation for ``act``. A resolve with ``notice`` also inserts the
    ``resolved`` notifications in the same transaction (issue #13: created with the change that
    causes them, even while the ops service is down)."""

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
