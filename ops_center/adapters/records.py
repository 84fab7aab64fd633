"""Rows the ops repository reads and writes. Plain frozen dataclasses; times are aware UTC.
An alert's and an incident's shared fields are the domain's (``AlertHeader``,
``IncidentHeader``): their rows extend them with the columns only the store has."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, Literal, TypeAlias, TypeVar

from ops_center.domain import alerts, lifecycle
from ops_center.domain.alerts import Alert, AlertHeader
from ops_center.domain.incident_model import Incident, IncidentHeader, TimelineEntry
from ops_center.domain.maintenance import MaintenanceWindow
from ops_center.domain.roles import Role

# The domain's words, under the names the adapters' callers import.
Severity: TypeAlias = alerts.Severity
SEVERITIES = alerts.SEVERITIES
AlertState: TypeAlias = alerts.AlertState
IncidentState: TypeAlias = lifecycle.IncidentState
INCIDENT_STATES = lifecycle.INCIDENT_STATES
AuditOutcome = Literal["ok", "denied", "failed"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    total: int


@dataclass(frozen=True, slots=True)
class Bilingual:
    """A text in Vietnamese and English (docs/style.md: Vietnamese first), as the API shows it."""

    vi: str
    en: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertRecord(AlertHeader):
    """A row of ``alerts``: the alert's header plus the columns the store allows empty."""

    gateway: str | None = None
    category: str | None = None
    message_vi: str | None = None
    message_en: str | None = None
    incident_id: str | None = None
    detail: str | None = None

    @classmethod
    def from_domain(cls, alert: Alert, incident_id: str | None = None) -> AlertRecord:
        a = alert
        limit = f"limit={a.limit:g}" if a.limit is not None else None
        return cls(**a.header_fields(), gateway=a.gateway, category=a.category, message_vi=a.message_vi,
                   message_en=a.message_en, incident_id=incident_id, detail=limit)

    @property
    def message(self) -> Bilingual | None:
        """The rule's message; English falls back to the Vietnamese when a rule has none."""
        if not self.message_vi:
            return None
        return Bilingual(self.message_vi, self.message_en or self.message_vi)


@dataclass(frozen=True, slots=True, kw_only=True)
class IncidentRecord(IncidentHeader):
    """A row of ``incidents``: the incident's header plus who it is assigned to and when it was
    escalated (the domain keeps a flag)."""

    assignee: str | None = None
    escalated_at: datetime | None = None

    @classmethod
    def from_domain(cls, incident: Incident, assignee: str | None = None) -> IncidentRecord:
        i = incident
        return cls(**i.header_fields(), assignee=assignee, escalated_at=i.updated_at if i.escalated else None)

    @property
    def title(self) -> Bilingual:
        return Bilingual(self.title_vi, self.title_en)


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    incident_id: str
    site: str
    at: datetime
    actor: str  # a user name, or "rule:<rule>" / "system"
    action: str  # opened, alert_added, acknowledged, resolved, note, assigned, escalated...
    detail: str | None = None
    id: int | None = None

    @classmethod
    def from_domain(cls, incident: Incident, entry: TimelineEntry) -> TimelineEvent:
        detail = (
            entry.message_vi
            if entry.message_vi == entry.message_en
            else f"{entry.message_vi} / {entry.message_en}"
        )
        if entry.alert_id:
            detail = f"{detail} [alert {entry.alert_id}]"
        return cls(
            incident_id=incident.id,
            site=incident.site,
            at=entry.at,
            actor=entry.by,
            action=entry.action,
            detail=detail,
        )


@dataclass(frozen=True, slots=True)
class UserRecord:
    name: str
    password_hash: str
    role: Role
    sites: tuple[str, ...]
    disabled: bool = False
    token_version: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: datetime
    actor: str
    action: str
    outcome: AuditOutcome
    target: str | None = None
    site: str | None = None
    ip: str | None = None
    detail: str | None = None
    id: int | None = None


@dataclass(frozen=True, slots=True)
class GatewayStatusRecord:
    gateway: str
    site: str
    state: str  # online | offline (from the retained status / Last Will)
    last_seen: datetime
    outbox_batches: int = 0
    outbox_oldest: datetime | None = None
    dropped_batches: int = 0
    last_seq: int = 0
    agent: str | None = None


@dataclass(frozen=True, slots=True)
class SecurityEventRecord:
    at: datetime
    source: str  # broker | api
    kind: str  # acl_denied, auth_failed, anonymous_refused, unknown_client, ...
    detail: str
    site: str | None = None
    gateway: str | None = None
    client: str | None = None
    ip: str | None = None
    id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MaintenanceWindowRecord(MaintenanceWindow):
    """A row of ``maintenance_windows``: the domain's window plus the site it belongs to."""

    site: str


@dataclass(frozen=True, slots=True)
class LatestValue:
    sensor: str
    metric: str
    time: datetime
    value: float
    quality: str


@dataclass(frozen=True, slots=True)
class RawPoint:
    time: datetime
    value: float
    quality: str


@dataclass(frozen=True, slots=True)
class RollupPoint:
    bucket: datetime
    min: float
    max: float
    count: int
    sum: float


@dataclass(frozen=True, slots=True)
class GatewayBatchStats:
    """What the ingest handled for one gateway over a window (ingest_batches)."""

    gateway: str
    batches: int  # handled: stored or dead-lettered
    stored: int
    min_seq: int
    max_seq: int
    last_received: datetime
    dropped_through: int = 0  # highest seq the gateway declared dropped in the window


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    id: int
    received_at: datetime
    topic: str
    reason: str
    detail: str
    payload_bytes: int
    payload_preview: str
    gateway: str | None = None
    site: str | None = None
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class IncidentDetail:
    incident: IncidentRecord
    alerts: list[AlertRecord] = field(default_factory=list)
    timeline: list[TimelineEvent] = field(default_factory=list)


NotificationState = Literal["pending", "sent", "failed"]
NotifyChannel = Literal["email", "sms", "zalo", "webhook"]
NotifyReason = Literal["opened", "escalated", "severity", "resolved"]


def notification_id(incident_id: str, contact: str, channel: str, reason: str) -> str:
    """The row id of a notification key: short (it travels in acknowledge links and SMS) and
    the same on every replay of the step that creates it."""
    import hashlib

    key = f"{incident_id}\x1f{contact}\x1f{channel}\x1f{reason}".encode()
    return hashlib.sha256(key).hexdigest()[:20]


@dataclass(frozen=True, slots=True)
class NotificationRecord:
    """A row of the ``notifications`` outbox (migration 0006)."""

    id: str
    incident_id: str
    site: str
    contact: str
    channel: NotifyChannel
    reason: NotifyReason
    state: NotificationState
    created_at: datetime
    next_attempt_at: datetime
    subject: str
    body: str
    step: int = 0
    attempts: int = 0
    last_attempt_at: datetime | None = None
    sent_at: datetime | None = None
    error: str | None = None
    delivery: str | None = None
    ack_used_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ResolvedNotice:
    """An incident resolved: every (contact, channel) told of it before hears of it once more."""

    incident_id: str
    site: str
    at: datetime
    subject: str
    body: str
