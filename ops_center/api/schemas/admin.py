"""Admin answers: dead letters, the audit log, security events; and maintenance windows."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field

from ops_center.adapters.records import (
    AuditEntry,
    DeadLetterRecord,
    MaintenanceWindowRecord,
    SecurityEventRecord,
)
from ops_center.api.schemas.common import InModel, Note, OutModel, PageModel, Time

# --- admin ---------------------------------------------------------------------------------------

# A record not yet stored has no id (None): shown as 0, as before.
StoredId = Annotated[int, BeforeValidator(lambda v: 0 if v is None else v)]


class DeadLetterOut(OutModel):
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
        return cls.model_validate(d)


class AuditOut(OutModel):
    id: StoredId
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
        return cls.model_validate(a)


class SecurityEventOut(OutModel):
    id: StoredId
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
        return cls.model_validate(e)


class DeadLetterPage(PageModel):
    items: list[DeadLetterOut]


class AuditPage(PageModel):
    items: list[AuditOut]


class SecurityEventPage(PageModel):
    items: list[SecurityEventOut]


# --- maintenance ---


MaintenanceScope = Literal["sensor", "gateway", "site"]
_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"  # docs/contract.md identifiers (sites, gateways, sensors)


class MaintenanceIn(InModel):
    scope: MaintenanceScope
    target: Annotated[str, Field(pattern=_ID_PATTERN, description="sensor, gateway or site id")]
    start: Time | None = Field(default=None, description="RFC 3339 with an offset; default: now")
    end: Time | None = Field(default=None, description="after start; none: until ended")
    reason: Note


class MaintenanceOut(OutModel):
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
        # Built by hand, not from_attributes: ``active`` is a fact of the answer's time, and the
        # API's names (start, end) are the contract's (docs/contract.md), not the table's.
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


class MaintenancePage(PageModel):
    items: list[MaintenanceOut]
