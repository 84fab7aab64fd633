"""Response and request models of the API (never the table rows themselves)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, datetime
from typing import Annotated, Literal

import orjson
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from contract.bounds import MAX_INT, text_problem, time_problem
from ops_center.adapters.commands import CommandRecord
from ops_center.adapters.records import (
    AlertRecord,
    AuditEntry,
    DeadLetterRecord,
    IncidentRecord,
    MaintenanceWindowRecord,
    SecurityEventRecord,
    TimelineEvent,
    UserRecord,
)
from ops_center.api.errors import Localized
from ops_center.domain.roles import Role

# --- bounds (docs/contract.md "Additions → Bounds and text", contract/bounds.py) ----------------------
# Every text a request carries is checked here, before any route sees it: no control character
# but tab and newline (NUL never), at most its length; every time representable in UTC and
# within [MIN_TIME, MAX_TIME); every integer within 0 … 2^63−1. Outside: 422, never a 500 from
# the store (PostgreSQL refuses NUL in text; Python cannot convert year 9999 at −23:59 to UTC).


def _text(max_length: int) -> AfterValidator:
    def check(value: str) -> str:
        problem = text_problem(value, max_length)
        if problem is not None:
            raise ValueError(problem)
        return value

    return AfterValidator(check)


def _check_time(value: datetime) -> datetime:
    problem = time_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


Time = Annotated[AwareDatetime, AfterValidator(_check_time)]
"""A body's time: with an offset, representable, within [MIN_TIME, MAX_TIME)."""
QueryTime = Annotated[datetime, AfterValidator(_check_time)]
"""A query's time (the routes say which are required): as ``Time``."""
BoundedInt = Annotated[int, Field(ge=0, le=MAX_INT)]

USER_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
UserName = Annotated[str, Field(pattern=USER_NAME_PATTERN)]
NOTE_MAX = 2000
Note = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=NOTE_MAX), _text(NOTE_MAX)
]
OptionalNote = Annotated[str, Field(max_length=NOTE_MAX), _text(NOTE_MAX)]
Severity = Literal["info", "warning", "critical", "emergency"]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- auth -------------------------------------------------------------------------------------


class TokenOut(_Out):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    refresh_token: str


TokenText = Annotated[str, Field(min_length=1, max_length=4096), _text(4096)]


class RefreshIn(_In):
    refresh_token: TokenText


class LogoutOut(_Out):
    revoked: bool = Field(description="phiên đã bị thu hồi / the session was live and is now revoked")


class StreamTicketOut(_Out):
    ticket: str = Field(description="GET /api/v1/stream?ticket=… — single use")
    expires_in: int = Field(description="seconds")


class MeOut(_Out):
    name: str
    role: Role
    sites: list[str]
    permissions: list[str]


class KindOut(_Out):
    code: str
    name: Localized
    metrics: list[str]


class MetricOut(_Out):
    code: str
    name: Localized
    unit: str
    boolean: bool


class CatalogOut(_Out):
    kinds: list[KindOut]
    metrics: list[MetricOut]


# --- sites and KPIs ----------------------------------------------------------------------------


class LocationOut(_Out):
    lat: float
    lon: float


class SiteOut(_Out):
    id: str
    name: Localized
    kind: str
    parent: str | None
    location: LocationOut
    gateways: int
    sensors: int


class AqiOut(_Out):
    value: int
    category: Localized
    colour: str
    dominant: str
    sensor: str
    hour: datetime


class DailyAqiOut(_Out):
    """QĐ 1459 daily VN_AQI (AQIᵈ) of a Vietnam day (ops_center/api/aqi_view.py)."""

    day: date
    value: int
    category: Localized
    colour: str
    dominant: str
    sensor: str
    partial: bool = Field(description="today: from the hours so far")


class IncidentCounts(_Out):
    info: int = 0
    warning: int = 0
    critical: int = 0
    emergency: int = 0
    total: int = 0


class OverviewOut(_Out):
    site: str
    name: Localized
    generated_at: datetime
    sensors_total: int
    sensors_online: int
    sensors_online_pct: float | None = Field(description="fresh within 3 × interval_s")
    gateways_total: int
    gateways_online: int
    data_completeness_pct: float | None = Field(
        description="batches stored / expected from seq over the window, discounted by silence"
    )
    completeness_window_s: int
    open_incidents: IncidentCounts
    aqi: AqiOut | None = Field(description="VN_AQI (QĐ 1459/QĐ-TCMT), worst station of the site, this hour")
    aqi_daily: list[DailyAqiOut] = Field(
        default_factory=list, description="daily VN_AQI, yesterday and today, worst station of the site"
    )
    dead_letters_today: int


class CityOverviewOut(_Out):
    generated_at: datetime
    sites: list[OverviewOut]
    sensors_total: int
    sensors_online: int
    sensors_online_pct: float | None
    open_incidents: IncidentCounts
    dead_letters_today: int


# --- gateways and sensors ------------------------------------------------------------------------


class GatewayOut(_Out):
    id: str
    site: str
    name: Localized | None
    state: Literal["online", "offline", "unknown"]
    last_seen: datetime | None
    outbox_batches: int | None
    outbox_oldest: datetime | None
    dropped_batches: int | None
    last_seq: int | None
    agent: str | None
    sensors: int


class LatestOut(_Out):
    metric: str
    unit: str
    value: float
    time: datetime
    quality: str
    age_s: float
    fresh: bool


class SensorOut(_Out):
    id: str
    site: str
    gateway: str
    kind: str
    name: Localized | None
    interval_s: int
    online: bool
    last_seen: datetime | None
    values: list[LatestOut]


class PointOut(_Out):
    time: datetime
    value: float
    min: float | None = None
    max: float | None = None
    count: int | None = None
    quality: str | None = None


class ReadingsOut(_Out):
    sensor: str
    metric: str
    unit: str
    start: datetime
    end: datetime
    bucket: str = Field(description="'raw', or the bucket width (1m ... 1d)")
    source: Literal["readings", "readings_1m", "readings_1h"]
    points: list[PointOut]
    truncated: bool = False
    next_start: datetime | None = None


# --- alerts and incidents ------------------------------------------------------------------------


class AlertOut(_Out):
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
        msg = Localized(vi=a.message_vi, en=a.message_en or a.message_vi) if a.message_vi else None
        return cls(
            id=a.id,
            rule=a.rule,
            site=a.site,
            gateway=a.gateway,
            sensor=a.sensor,
            metric=a.metric,
            severity=a.severity,
            state=a.state,
            opened_at=a.opened_at,
            cleared_at=a.cleared_at,
            updated_at=a.updated_at,
            incident_id=a.incident_id,
            late=a.late,
            value=a.value,
            detail=a.detail,
            category=a.category,
            message=msg,
        )


class IncidentOut(_Out):
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
        return cls(
            id=i.id,
            site=i.site,
            kind=i.kind,
            severity=i.severity,
            state=i.state,
            title=Localized(vi=i.title_vi, en=i.title_en),
            opened_at=i.opened_at,
            updated_at=i.updated_at,
            acknowledged_at=i.acknowledged_at,
            resolved_at=i.resolved_at,
            assignee=i.assignee,
            escalated_at=i.escalated_at,
        )


class TimelineOut(_Out):
    at: datetime
    actor: str
    action: str
    detail: str | None

    @classmethod
    def of(cls, e: TimelineEvent) -> TimelineOut:
        return cls(at=e.at, actor=e.actor, action=e.action, detail=e.detail)


class IncidentDetailOut(IncidentOut):
    alerts: list[AlertOut]
    timeline: list[TimelineOut]


class AcknowledgeIn(_In):
    note: OptionalNote | None = None


class NoteIn(_In):
    note: Note


class AssignIn(_In):
    assignee: UserName
    note: OptionalNote | None = None


# --- admin ---------------------------------------------------------------------------------------


class DeadLetterOut(_Out):
    id: int
    received_at: datetime
    topic: str
    gateway: str | None
    site: str | None
    seq: int | None
    reason: str
    detail: str
    payload_bytes: int
    payload_preview: str

    @classmethod
    def of(cls, d: DeadLetterRecord) -> DeadLetterOut:
        return cls(
            id=d.id,
            received_at=d.received_at,
            topic=d.topic,
            gateway=d.gateway,
            site=d.site,
            seq=d.seq,
            reason=d.reason,
            detail=d.detail,
            payload_bytes=d.payload_bytes,
            payload_preview=d.payload_preview,
        )


class AuditOut(_Out):
    id: int
    at: datetime
    actor: str
    action: str
    target: str | None
    site: str | None
    ip: str | None
    outcome: Literal["ok", "denied", "failed"]
    detail: str | None

    @classmethod
    def of(cls, a: AuditEntry) -> AuditOut:
        return cls(
            id=a.id or 0,
            at=a.at,
            actor=a.actor,
            action=a.action,
            target=a.target,
            site=a.site,
            ip=a.ip,
            outcome=a.outcome,
            detail=a.detail,
        )


class SecurityEventOut(_Out):
    id: int
    at: datetime
    source: str
    kind: str
    site: str | None
    gateway: str | None
    client: str | None
    ip: str | None
    detail: str

    @classmethod
    def of(cls, e: SecurityEventRecord) -> SecurityEventOut:
        return cls(
            id=e.id or 0,
            at=e.at,
            source=e.source,
            kind=e.kind,
            site=e.site,
            gateway=e.gateway,
            client=e.client,
            ip=e.ip,
            detail=e.detail,
        )


class _Page(_Out):
    total: int
    limit: int
    offset: int


class AlertPage(_Page):
    items: list[AlertOut]


class IncidentPage(_Page):
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


class DeadLetterPage(_Page):
    items: list[DeadLetterOut]


class AuditPage(_Page):
    items: list[AuditOut]


class SecurityEventPage(_Page):
    items: list[SecurityEventOut]


# --- users (admin) ------------------------------------------------------------------------------

PASSWORD_MIN = 10  # ops_center/security/passwords.py MIN_PASSWORD_CHARS (a test holds them equal)
PASSWORD_MAX = 256  # Argon2 takes any length: bounded so that hashing one costs what it should
Password = Annotated[
    str,
    Field(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX, description="no leading or trailing spaces"),
    _text(PASSWORD_MAX),
]
SiteId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$", max_length=63)]


class UserIn(_In):
    name: Annotated[UserName, Field(max_length=64)]
    role: Role
    sites: list[SiteId] = Field(
        default_factory=list, max_length=64, description="ward_staff, cluster_manager: at least one"
    )
    password: Password


class PasswordIn(_In):
    password: Password


class UserOut(_Out):
    name: str
    role: Role
    sites: list[str]
    disabled: bool
    created: datetime | None
    updated: datetime | None

    @classmethod
    def of(cls, u: UserRecord) -> UserOut:
        return cls(name=u.name, role=u.role, sites=list(u.sites), disabled=u.disabled,
                   created=u.created_at, updated=u.updated_at)


class UserPage(_Page):
    items: list[UserOut]


# --- operations ----------------------------------------------------------------------------------


class HealthOut(_Out):
    status: Literal["ok"] = "ok"


class ReadyOut(_Out):
    ready: bool
    checks: dict[str, bool]


# --- maintenance ---


MaintenanceScope = Literal["sensor", "gateway", "site"]
_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"  # docs/contract.md identifiers (sites, gateways, sensors)


class MaintenanceIn(_In):
    scope: MaintenanceScope
    target: Annotated[str, Field(pattern=_ID_PATTERN, description="sensor, gateway or site id")]
    start: Time | None = Field(default=None, description="RFC 3339 with an offset; default: now")
    end: Time | None = Field(default=None, description="after start; none: until ended")
    reason: Note


class MaintenanceOut(_Out):
    id: str
    site: str
    scope: MaintenanceScope
    target: str
    start: datetime
    end: datetime | None
    set_by: str
    reason: str
    active: bool  # in force at the time of the answer

    @classmethod
    def of(cls, w: MaintenanceWindowRecord, now: datetime) -> MaintenanceOut:
        return cls(
            id=w.id,
            site=w.site,
            scope=w.scope,
            target=w.target,
            start=w.starts_at,
            end=w.ends_at,
            set_by=w.set_by,
            reason=w.reason,
            active=w.starts_at <= now and (w.ends_at is None or w.ends_at > now),
        )


class MaintenancePage(_Page):
    items: list[MaintenanceOut]


# --- commands ----------------------------------------------------------------------------------

ArgValue = bool | int | float | str | None
ARG_TEXT_MAX = 256


def _check_arg(value: ArgValue) -> ArgValue:
    """A command argument, bounded like every payload the platform publishes (it goes out over
    MQTT): integers within 0 … 2^63−1, finite floats, safe text of at most ARG_TEXT_MAX."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        if not 0 <= value <= MAX_INT:
            raise ValueError(f"integer outside 0 … {MAX_INT}")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("number is not finite")
    else:
        problem = text_problem(value, ARG_TEXT_MAX)
        if problem is not None:
            raise ValueError(problem)
    return value


ArgIn = Annotated[ArgValue, AfterValidator(_check_arg)]
ArgName = Annotated[str, StringConstraints(min_length=1, max_length=64), _text(64)]
CommandStateOut = Literal["pending", "applied", "failed", "expired"]


class CommandIn(_In):
    sensor: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$", description="mã cảm biến / sensor id")
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$", description="lệnh / command, e.g. set_lamp")
    args: dict[ArgName, ArgIn] = Field(
        default_factory=dict, max_length=16, description='e.g. {"on": true, "dim_pct": 60} or {"auto": true}'
    )
    ttl_s: int = Field(default=300, ge=10, le=3600, description="hết hạn sau / expires after (s)")


class CommandOut(_Out):
    id: str
    site: str
    gateway: str
    sensor: str
    name: str
    args: dict[str, ArgValue]
    state: CommandStateOut
    created_by: str
    created_at: datetime
    expires_at: datetime
    result_at: datetime | None
    detail: str | None

    @classmethod
    def of(cls, c: CommandRecord) -> CommandOut:
        return cls(
            id=c.id,
            site=c.site,
            gateway=c.gateway,
            sensor=c.sensor,
            name=c.name,
            args=c.args,
            state=c.state,
            created_by=c.created_by,
            created_at=c.created_at,
            expires_at=c.expires_at,
            result_at=c.result_at,
            detail=c.detail,
        )


class CommandPage(_Page):
    items: list[CommandOut]
