"""The incident manager's data: what it hands out (:class:`Incident`, :class:`IncidentChange`,
:class:`TimelineEntry`) and what it tracks inside (:class:`Tracked`, :class:`Pending`).
The lifecycle's states and actions are ops_center/domain/lifecycle.py's."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Final

from ops_center.domain.alerts import Alert, Severity, severity_rank, to_datetime
from ops_center.domain.lifecycle import IncidentAction, IncidentState

GATEWAY_RULE_KINDS = frozenset({"gateway_offline", "gateway_silent"})
GATEWAY_KIND = "gateway_offline"
AREA_KIND = "area_outage"
SNAPSHOT_VERSION = 1

@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One change of an incident: when, what, by whom (``rule:<id>``, ``system``,
    ``pattern:<kind>`` or a user name), and why."""

    at: datetime
    action: IncidentAction
    by: str
    message_vi: str
    message_en: str
    alert_id: str | None = None


@dataclass(frozen=True, slots=True)
class IncidentHeader:
    """What an incident's row (the adapters' ``IncidentRecord``, table ``incidents``) and the
    manager's :class:`Incident` share, declared once here: both extend it."""

    id: str
    site: str
    kind: str
    severity: Severity
    state: IncidentState
    title_vi: str
    title_en: str
    opened_at: datetime            # event time of the change that opened it
    updated_at: datetime
    acknowledged_at: datetime | None = None
    resolved_at: datetime | None = None

    def header_fields(self) -> dict[str, Any]:
        """The header's fields by name, of any incident shape: what another shape is built
        from (``IncidentRecord(**incident.header_fields(), ...)``)."""
        return {name: getattr(self, name) for name in _INCIDENT_HEADER}


_INCIDENT_HEADER: Final = tuple(f.name for f in fields(IncidentHeader))


@dataclass(frozen=True, slots=True, kw_only=True)
class Incident(IncidentHeader):
    """An incident as the manager hands it out: its header (the ``incidents`` row) plus its
    members, who acted and its timeline."""

    group: str                     # the grouping value (site, gateway, sensor, attr=value)
    alert_ids: tuple[str, ...]
    active_alert_ids: tuple[str, ...]
    sensors: tuple[str, ...]
    gateways: tuple[str, ...]
    acknowledged_by: str | None = None
    resolved_by: str | None = None
    escalated: bool = False
    late: bool = False             # made only of late data: never pages
    merged_into: str | None = None  # absorbed by another incident (topology)
    timeline: tuple[TimelineEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class IncidentChange:
    """What happened to one incident. ``alert_ids``: alerts this change attached to it
    (update ``alerts.incident_id``); ``entry`` is the new timeline entry."""

    action: IncidentAction
    incident: Incident
    entry: TimelineEntry
    alert_ids: tuple[str, ...] = ()
    notify_min_rank: int = 2

    @property
    def notify(self) -> bool:
        """True when this change should page someone now."""
        inc = self.incident
        return (self.action in ("opened", "reopened", "escalated") and not inc.late
                and inc.merged_into is None and severity_rank(inc.severity) >= self.notify_min_rank)


@dataclass(slots=True)
class Tracked:
    """An incident the manager can still change (mutable; times in epoch seconds)."""

    id: str
    site: str
    kind: str
    group: str
    pattern: int | None            # index into the pattern set; None for topology kinds
    severity: Severity
    state: IncidentState
    title_vi: str
    title_en: str
    opened_at: float
    opened_wall: float
    updated_at: float
    members: dict[str, Alert] = field(default_factory=dict)
    acknowledged_at: float | None = None
    acknowledged_by: str | None = None
    resolved_at: float | None = None
    resolved_by: str | None = None
    escalated: bool = False
    merged_into: str | None = None
    clear_event: float | None = None   # when every member had cleared (event time)
    clear_wall: float | None = None
    timeline: list[TimelineEntry] = field(default_factory=list)

    @property
    def live(self) -> bool:
        return self.state != "resolved" and self.merged_into is None


@dataclass(slots=True)
class Pending:
    members: dict[str, Alert] = field(default_factory=dict)
    ready_event: float | None = None   # when an opening condition first held (event time)
    ready_wall: float | None = None


@dataclass(slots=True)
class ManagerStats:
    suppressed: int = 0    # alert changes ignored under maintenance
    absorbed: int = 0      # silence alerts absorbed by a gateway or area incident
    forgotten: int = 0     # resolved incidents dropped from memory after their reopen window



def dt(t: float | None) -> datetime | None:
    return None if t is None else to_datetime(t)
