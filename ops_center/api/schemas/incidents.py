"""Alerts and incidents: answers read from the store's records (``from_attributes``), and the
bodies of a person's actions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

import orjson

from ops_center.adapters.records import AlertRecord, IncidentRecord, TimelineEvent
from ops_center.api.errors import Localized
from ops_center.api.schemas.common import InModel, Note, OptionalNote, OutModel, PageModel, Severity, UserName

# --- alerts and incidents ------------------------------------------------------------------------


class AlertOut(OutModel):
    id: str
    rule: str
    site: str
    gateway: str | None
    sensor: str | None
    metric: str | None
    severity: Severity
    state: Literal["active", "cleared"]
    opened_at: datetime
    cleared_at: datetime | None
    updated_at: datetime
    incident_id: str | None
    late: bool
    value: float | None
    detail: str | None
    category: str | None
    message: Localized | None

    @classmethod
    def of(cls, a: AlertRecord) -> AlertOut:
        # from_attributes all the way down: ``message`` is the record's ``Bilingual``.
        return cls.model_validate(a, from_attributes=True)


class IncidentOut(OutModel):
    id: str
    site: str
    kind: str
    severity: Severity
    state: Literal["open", "acknowledged", "resolved"]
    title: Localized
    opened_at: datetime
    updated_at: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    assignee: str | None
    escalated_at: datetime | None

    @classmethod
    def of(cls, i: IncidentRecord) -> IncidentOut:
        # from_attributes all the way down: ``title`` is the record's ``Bilingual``.
        return cls.model_validate(i, from_attributes=True)


class TimelineOut(OutModel):
    at: datetime
    actor: str
    action: str
    detail: str | None

    @classmethod
    def of(cls, e: TimelineEvent) -> TimelineOut:
        return cls.model_validate(e)


class IncidentDetailOut(IncidentOut):
    alerts: list[AlertOut]
    timeline: list[TimelineOut]


class AcknowledgeIn(InModel):
    note: OptionalNote | None = None


class NoteIn(InModel):
    note: Note


class AssignIn(InModel):
    assignee: UserName
    note: OptionalNote | None = None


class AlertPage(PageModel):
    items: list[AlertOut]


class IncidentPage(PageModel):
    items: list[IncidentOut]


def incident_page_json(items: Sequence[IncidentRecord], *, total: int, limit: int, offset: int) -> bytes:
    """An ``IncidentPage`` as JSON, byte for byte what ``IncidentPage(...).model_dump_json()``
    gives (a test holds the two together), without building a model per incident: the list
    every operations screen polls spent more time in those models than in its query. The
    values come from the store, whose CHECK constraints keep severity and state within the
    model's literals."""
    return orjson.dumps(
        {
            "total": total,
            "limit": limit,
            "offset": offset,
            "items": [
                {
                    "id": i.id,
                    "site": i.site,
                    "kind": i.kind,
                    "severity": i.severity,
                    "state": i.state,
                    "title": {"vi": i.title_vi, "en": i.title_en},
                    "opened_at": i.opened_at,
                    "updated_at": i.updated_at,
                    "acknowledged_at": i.acknowledged_at,
                    "resolved_at": i.resolved_at,
                    "assignee": i.assignee,
                    "escalated_at": i.escalated_at,
                }
                for i in items
            ],
        },
        option=orjson.OPT_UTC_Z,
    )
