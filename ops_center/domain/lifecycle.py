"""The incident lifecycle: one transition function for every change of an incident's state.

States: ``open`` → ``acknowledged`` → ``resolved`` (``resolved`` → ``open`` again only by a
recurrence, ``reopened``). The actions are the timeline's vocabulary (:data:`IncidentAction`),
whoever takes them:

- the incident manager (ops_center/domain/incidents.py): ``opened``, ``reopened``, the
  member changes, ``escalated`` (nobody acknowledged in time), ``resolved`` (auto-resolve after
  the hold), ``merged`` (absorbed by a gateway or area incident: closed);
- people, through the API (ops_center/service/actions.py runs it inside the repository's
  transaction): acknowledge, resolve, note, assign, escalate (:data:`HumanActionName`, mapped
  onto the timeline's words by :data:`TIMELINE_ACTION`).

Pure: no I/O, no clock. Both the manager and the repository mutation call :func:`next_state`;
what the API committed is then adopted by the manager as it stands in the store
(docs/design.md, "Walks through the code").
"""

from __future__ import annotations

from typing import Final, Literal

from ops_center.domain.errors import InvalidTransition

IncidentState = Literal["open", "acknowledged", "resolved"]
INCIDENT_STATES: Final[tuple[IncidentState, ...]] = ("open", "acknowledged", "resolved")

IncidentAction = Literal[
    "opened", "alert_added", "alert_updated", "alert_cleared", "kind_changed", "acknowledged",
    "resolved", "reopened", "escalated", "merged", "annotated", "assigned",
]

HumanActionName = Literal["acknowledge", "resolve", "note", "assign", "escalate"]

TIMELINE_ACTION: Final[dict[HumanActionName, IncidentAction]] = {
    "acknowledge": "acknowledged",
    "resolve": "resolved",
    "note": "annotated",
    "assign": "assigned",
    "escalate": "escalated",
}

# Actions that leave the state as it is, but only on an incident that is not closed.
_LIVE_ONLY: Final[frozenset[IncidentAction]] = frozenset({"assigned", "escalated", "kind_changed"})
# Actions that never change the state (a member's change, a note: any state).
_ANY_STATE: Final[frozenset[IncidentAction]] = frozenset(
    {"alert_added", "alert_updated", "alert_cleared", "annotated"})


def next_state(state: IncidentState | None, action: IncidentAction) -> IncidentState:
    """The state after ``action`` on an incident in ``state`` (None: not opened yet).

    Raises :class:`InvalidTransition` (with ``state``) when the lifecycle forbids it:
    acknowledging what is not open, resolving, merging, assigning or escalating what is
    resolved, reopening what is not resolved, opening twice.
    """
    if state is None:
        if action == "opened":
            return "open"
        raise InvalidTransition(f"{action}: no such incident yet", state="none")
    if action in _ANY_STATE:
        return state
    if action == "acknowledged":
        if state != "open":
            raise InvalidTransition(f"acknowledged: the incident is {state}, not open", state=state)
        return "acknowledged"
    if action == "reopened":
        if state != "resolved":
            raise InvalidTransition(f"reopened: the incident is {state}, not resolved", state=state)
        return "open"
    if state == "resolved" or action == "opened":
        raise InvalidTransition(f"{action}: the incident is {state}", state=state)
    if action in ("resolved", "merged"):
        return "resolved"
    assert action in _LIVE_ONLY
    return state
