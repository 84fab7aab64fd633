"""The one incident lifecycle (ops_center/domain/lifecycle.py): its table of transitions, the
repository mutation of people's actions (ops_center/service/actions.py) and the incident
manager's adoption of a stored lifecycle, all on the same function."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest

from ops_center.adapters.records import IncidentRecord
from ops_center.domain.errors import InvalidTransition
from ops_center.domain.lifecycle import INCIDENT_STATES, TIMELINE_ACTION, IncidentState, next_state
from ops_center.service.actions import HumanAction, mutation, transition
from tests.unit.test_ops_incidents import Scene

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

# (state, action) → next state; None: refused.
TABLE: dict[tuple[IncidentState, str], IncidentState | None] = {
    ("open", "acknowledged"): "acknowledged",
    ("acknowledged", "acknowledged"): None,
    ("resolved", "acknowledged"): None,
    ("open", "resolved"): "resolved",
    ("acknowledged", "resolved"): "resolved",
    ("resolved", "resolved"): None,
    ("open", "merged"): "resolved",
    ("acknowledged", "merged"): "resolved",
    ("resolved", "merged"): None,
    ("resolved", "reopened"): "open",
    ("open", "reopened"): None,
    ("acknowledged", "reopened"): None,
    ("open", "escalated"): "open",
    ("acknowledged", "escalated"): "acknowledged",
    ("resolved", "escalated"): None,
    ("acknowledged", "assigned"): "acknowledged",
    ("resolved", "assigned"): None,
    ("resolved", "annotated"): "resolved",
    ("resolved", "alert_added"): "resolved",
    ("open", "opened"): None,
}


@pytest.mark.parametrize(("state", "action"), list(TABLE))
def test_the_transition_table(state: IncidentState, action: str) -> None:
    expected = TABLE[(state, action)]
    if expected is None:
        with pytest.raises(InvalidTransition) as err:
            next_state(state, action)  # type: ignore[arg-type]
        assert err.value.state == state
    else:
        assert next_state(state, action) == expected  # type: ignore[arg-type]


def test_only_opening_starts_an_incident() -> None:
    assert next_state(None, "opened") == "open"
    with pytest.raises(InvalidTransition):
        next_state(None, "acknowledged")


def record(state: IncidentState) -> IncidentRecord:
    return IncidentRecord(id="inc-1", site="an-xa", kind="gas_leak", severity="critical", state=state,
                          title_vi="Rò rỉ khí", title_en="Gas leak", opened_at=T0, updated_at=T0)


@pytest.mark.parametrize("state", INCIDENT_STATES)
@pytest.mark.parametrize("action", list(TIMELINE_ACTION))
def test_the_stored_mutation_follows_the_same_table(state: IncidentState, action: str) -> None:
    act = HumanAction(incident_id="inc-1", action=action, by="tran.van.b",  # type: ignore[arg-type]
                      at=T0 + timedelta(minutes=1), note="ghi chú", assignee="nguyen.van.a")
    try:
        expected: IncidentState | None = next_state(state, TIMELINE_ACTION[act.action])
    except InvalidTransition:
        expected = None
    if expected is None:
        with pytest.raises(InvalidTransition):
            mutation(act)(record(state))
        return
    update = mutation(act)(record(state))
    assert update.incident.state == expected == transition(record(state), act).state
    assert [e.action for e in update.events] == [TIMELINE_ACTION[act.action]]
    assert update.audit.detail is not None and update.audit.detail.startswith(f"{state} → {expected}")


@dataclass(frozen=True)
class Stored:
    state: IncidentState
    acknowledged_at: datetime | None = None
    resolved_at: datetime | None = None
    escalated_at: datetime | None = None


def test_the_manager_adopts_a_stored_acknowledgement_of_what_it_had_auto_resolved() -> None:
    s = Scene()
    s.set("flood-depth", "tn-flood-01", "warning")
    s.set("flood-depth", "tn-flood-01", None)
    out = s.advance(16)  # auto-resolved after the 15 min hold
    inc = out[0].incident
    assert inc.state == "resolved"
    with pytest.raises(InvalidTransition):  # its own lifecycle refuses it...
        s.mgr.acknowledge(inc.id, "tran.van.b", s.now)
    # ... but what the store holds is adopted: never refused.
    stored = Stored("acknowledged", acknowledged_at=s.now)
    change = s.mgr.adopt(inc.id, stored, action="acknowledged", by="tran.van.b", at=s.now)
    assert change is not None and change.incident.state == "acknowledged"
    assert change.incident.acknowledged_by == "tran.van.b" and change.incident.resolved_at is None
    # Nothing is active: the hold runs again and the manager resolves it on its own.
    assert [c.action for c in s.advance(16)] == ["resolved"]


def test_the_manager_adopts_a_merged_childs_stored_state_and_keeps_it_merged() -> None:
    s = Scene()
    s.set("gateway-offline", None, "warning", gateway="tn-gw-01")
    s.advance(2)
    s.set("gateway-offline", None, "warning", gateway="tn-gw-02")
    child = next(i for i in s.mgr.incidents(include_merged=True) if i.merged_into is not None)
    change = s.mgr.adopt(child.id, Stored("resolved", resolved_at=s.now), action="resolved",
                         by="tran.van.b", at=s.now)
    assert change is not None and change.incident.state == "resolved"
    assert change.incident.merged_into == child.merged_into


def test_adoption_of_an_incident_the_manager_forgot_is_a_no_op() -> None:
    s = Scene()
    assert s.mgr.adopt("nope", Stored("resolved"), action="resolved", by="x", at=s.now) is None


def test_a_persons_resolve_is_adopted_and_escalation_stops() -> None:
    s = Scene()
    s.set("gas-lel", "ax-gas-01", "emergency")
    inc = s.mgr.incidents()[0]
    rec = replace(record("resolved"), id=inc.id, resolved_at=s.now)
    change = s.mgr.adopt(inc.id, rec, action="resolved", by="tran.van.b", at=s.now, note="đã khóa van")
    assert change is not None and change.incident.resolved_by == "tran.van.b"
    assert change.entry.message_vi == "đã khóa van"
    assert s.advance(60) == []  # resolved: no escalation
