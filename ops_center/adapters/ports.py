"""The ops store's ports, one ``Protocol`` per aggregate (docs/design.md, "Ops store"), and
the values they exchange. Implementations: ``ops_center/adapters/sql_*.py`` (shared by the
SQLite and PostgreSQL adapters); ``OpsRepository`` (ops_center/adapters/repository.py) holds
one of each (``repo.incidents``, ``repo.users``, ...). This module imports records only, never an
implementation.

Site filters: ``sites`` is either a sequence of site ids (an empty one matches nothing) or
None for "every site" (global scopes only). The API derives it from the user's ``Scope``.

Besides the ops tables, the read side queries the ingest's tables (readings, rollups,
ingest_batches, gateway_drops, dead_letters) through SQL only: the components share the
store, never code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from ops_center.adapters.records import (
    AlertRecord,
    AlertState,
    AuditEntry,
    DeadLetterRecord,
    GatewayBatchStats,
    GatewayStatusRecord,
    IncidentDetail,
    IncidentRecord,
    IncidentState,
    LatestValue,
    MaintenanceWindowRecord,
    NotificationRecord,
    Page,
    RawPoint,
    ResolvedNotice,
    RollupPoint,
    SecurityEventRecord,
    TimelineEvent,
    UserRecord,
)

Sites = Sequence[str] | None
Resolution = Literal["1m", "1h"]
Tt10State = Literal["pending", "sent", "failed"]
TT10_STATES: tuple[Tt10State, ...] = ("pending", "sent", "failed")


@dataclass(frozen=True, slots=True)
class IncidentUpdate:
    """What an incident action produces from the incident as currently stored (locked)."""

    incident: IncidentRecord
    events: tuple[TimelineEvent, ...]
    audit: AuditEntry
    # A person resolved it: whoever was told of it hears so (the outbox rows are inserted in
    # the action's own transaction, issue #13; a later insert of the same keys is a no-op).
    resolved: tuple[ResolvedNotice, ...] = ()


IncidentMutation = Callable[[IncidentRecord], IncidentUpdate]


@dataclass(frozen=True, slots=True)
class ServiceSnapshot:
    """The ops service's rule state (``ops_service_state``: one row per service name)."""

    name: str
    data: bytes


@dataclass(frozen=True, slots=True)
class StepWrite:
    """Everything one evaluation step of the ops service writes, committed as ONE transaction
    (issue #4: a crash never leaves half a step), in this order: incidents, their timeline
    entries, alerts, gateway status, the notifications the changes cause (the outbox, issue
    #13: a replayed notification is a no-op by its key), and the service's snapshot when the
    step carries one."""

    alerts: tuple[AlertRecord, ...] = ()
    incidents: tuple[IncidentRecord, ...] = ()
    timeline: tuple[TimelineEvent, ...] = ()
    gateways: tuple[GatewayStatusRecord, ...] = ()
    snapshot: ServiceSnapshot | None = None
    notifications: tuple[NotificationRecord, ...] = ()
    resolved: tuple[ResolvedNotice, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.alerts or self.incidents or self.timeline or self.gateways or self.snapshot
                    or self.notifications or self.resolved)


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """What a row held before a step wrote it: how the service tells a replayed change (already
    stored, already on the live stream) from a new one."""

    updated_at: datetime
    state: str


@dataclass(frozen=True, slots=True)
class StepOutcome:
    timeline_new: tuple[bool, ...]  # per ``StepWrite.timeline`` entry: False when already stored
    alerts_before: dict[str, StoredVersion]  # alert id -> (updated_at, "state/severity") before
    gateways_before: dict[str, StoredVersion]  # gateway -> (last_seen, state) before the step


class IncidentRepository(Protocol):
    """Alerts, incidents, their timeline and the ops service's evaluation steps."""

    def upsert_alert(self, alert: AlertRecord) -> None:
        """Insert or update by id; an older ``updated_at`` never overwrites a newer one."""

    def upsert_incident(self, incident: IncidentRecord) -> None:
        """Insert or update by id. Machine fields (kind, severity, titles) follow the
        argument. The lifecycle moves forward only (open < acknowledged < resolved), except
        a reopen (resolved -> open, which also clears acknowledged_at/resolved_at/
        escalated_at); otherwise the human fields keep their first value, so a service
        that has not yet heard of a person's action cannot undo it."""

    def append_timeline(self, event: TimelineEvent) -> int | None:
        """The new entry's id; None when the same entry (incident, at, actor, action, detail)
        is already stored: a replayed entry is a no-op."""

    def commit_step(self, step: StepWrite) -> StepOutcome:
        """``step`` in one transaction; what the rows held before (see ``StepOutcome``)."""

    def load_service_state(self, name: str) -> bytes | None:
        """The ops service's last saved rule state; None when it never saved one."""

    def save_service_state(self, name: str, data: bytes) -> None:
        """Replace the saved rule state of ``name`` (committed before returning)."""

    def active_alerts(self) -> list[AlertRecord]: ...

    def open_incidents(self) -> list[IncidentRecord]: ...

    def list_alerts(
        self, sites: Sites, state: AlertState | None, limit: int, offset: int
    ) -> Page[AlertRecord]: ...

    def list_incidents(
        self, sites: Sites, state: IncidentState | None, limit: int, offset: int
    ) -> Page[IncidentRecord]: ...

    def get_incident(self, incident_id: str) -> IncidentDetail | None: ...

    def apply_incident_action(self, incident_id: str, mutate: IncidentMutation) -> IncidentRecord | None:
        """In one transaction, with the incident row locked: ``mutate`` the stored incident,
        write it, append its timeline events and its audit entry. None when no such
        incident; whatever ``mutate`` raises rolls everything back and propagates."""

    def open_incident_counts(self, sites: Sites) -> dict[str, dict[str, int]]:
        """Unresolved incidents per site and severity."""


class GatewayRepository(Protocol):
    """Gateway status (written by the ops service) and what the ingest recorded about each
    gateway: its batches, its declared drops, its dead letters."""

    def upsert_gateway_status(self, status: GatewayStatusRecord) -> None:
        """Insert or update by gateway; an older ``last_seen`` never overwrites a newer one."""

    def list_gateway_status(self, sites: Sites) -> list[GatewayStatusRecord]: ...

    def batch_stats(self, gateways: Sequence[str], since: datetime) -> list[GatewayBatchStats]: ...

    def dead_letters(self, sites: Sites, limit: int, offset: int) -> Page[DeadLetterRecord]: ...

    def dead_letter_counts(self, sites: Sites, since: datetime) -> dict[str, int]: ...


class UserRepository(Protocol):
    """Users and the audit log of what they did."""

    def get_user(self, name: str) -> UserRecord | None: ...

    def list_users(self) -> list[UserRecord]: ...

    def add_user(self, user: UserRecord) -> None:
        """Raises ``UserExists``."""

    def update_user(
        self, name: str, *, password_hash: str | None = None, disabled: bool | None = None, at: datetime
    ) -> UserRecord:
        """Change the password or the disabled flag; either bumps ``token_version``.
        Raises ``UnknownUser``."""

    def append_audit(self, entry: AuditEntry) -> int: ...

    def audit_entries(self, limit: int, offset: int) -> Page[AuditEntry]: ...


class SecurityEventRepository(Protocol):
    """What the broker watch and the API saw of attacks (docs/security.md)."""

    def insert_security_event(self, event: SecurityEventRecord) -> int: ...

    def security_events(self, sites: Sites, limit: int, offset: int) -> Page[SecurityEventRecord]: ...


class MaintenanceRepository(Protocol):
    """Maintenance windows: what silences a site's alerts, and for how long."""

    def upsert_maintenance(self, window: MaintenanceWindowRecord) -> None: ...

    def get_maintenance(self, window_id: str) -> MaintenanceWindowRecord | None: ...

    def list_maintenance(self, sites: Sites, active_at: datetime | None) -> list[MaintenanceWindowRecord]: ...


class ReadingsReader(Protocol):
    """The ingest's readings and rollups, read only."""

    def latest_values(self, pairs: Sequence[tuple[str, str]], since: datetime) -> list[LatestValue]:
        """The newest reading of each (sensor, metric) at or after ``since``."""

    def raw_readings(
        self, sensor: str, metric: str, start: datetime, end: datetime, limit: int
    ) -> list[RawPoint]: ...

    def rollup_readings(
        self, resolution: Resolution, sensor: str, metric: str, start: datetime, end: datetime
    ) -> list[RollupPoint]: ...

    def hourly_means(
        self, sensors: Sequence[str], metrics: Sequence[str], since: datetime
    ) -> dict[tuple[str, str], list[tuple[datetime, float]]]:
        """Hourly means (readings_1h) per (sensor, metric) from ``since``, oldest first."""


@dataclass(frozen=True, slots=True)
class Tt10Upload:
    """One file of the TT 10/2021 feed (table ``tt10_uploads``)."""

    file: str
    station: str
    sensor: str
    cycle: datetime
    state: Tt10State
    attempts: int
    bytes: int
    created_at: datetime
    last_attempt_at: datetime | None
    sent_at: datetime | None
    error: str | None


@dataclass(slots=True)
class Tt10StationSummary:
    station: str
    sensor: str
    counts: dict[str, int]  # files per state (every one of TT10_STATES)
    last_sent_cycle: datetime | None
    oldest_unsent_cycle: datetime | None


class Tt10Reader(Protocol):
    """The TT 10/2021 feed's upload log, read only (the feed process writes it,
    feeds/tt10/uploads.py)."""

    def stations(self, site: str) -> list[Tt10StationSummary]:
        """Per station of ``site``: files per state, newest sent cycle, oldest unsent one."""

    def uploads(self, site: str, state: Tt10State | None, limit: int, offset: int) -> Page[Tt10Upload]:
        """The files of ``site``, newest cycle first."""

    def last_error(self, site: str) -> tuple[datetime, str] | None:
        """When the newest failed upload of ``site`` failed, and why."""
