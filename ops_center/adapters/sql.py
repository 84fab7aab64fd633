"""``SqlOpsRepository``: the ``OpsRepository`` composition on one SQL database. It holds one
object per aggregate (``incidents``, ``gateways``, ``users``, ``security``, ``maintenance``,
``readings``; ops_center/adapters/sql_*.py), each running on this database's connections,
and forwards every method of the port to the one that owns it. The SQLite and PostgreSQL
adapters (sqlite.py, postgres.py) are subclasses that supply the connections and the
dialect's hooks (``SqlDatabase``, ops_center/adapters/sql_base.py); code that needs one
aggregate only can take the object itself (e.g. ``repo.users``).
"""

from __future__ import annotations

from abc import ABC
from collections.abc import Sequence
from datetime import datetime

from ops_center.adapters.ports import IncidentMutation, Resolution, Sites, StepOutcome, StepWrite
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
    Page,
    RawPoint,
    RollupPoint,
    SecurityEventRecord,
    TimelineEvent,
    UserRecord,
)
from ops_center.adapters.sql_base import SqlDatabase
from ops_center.adapters.sql_gateways import SqlGatewayRepository
from ops_center.adapters.sql_incidents import SqlIncidentRepository
from ops_center.adapters.sql_readings import SqlReadingsReader
from ops_center.adapters.sql_security import SqlMaintenanceRepository, SqlSecurityEventRepository
from ops_center.adapters.sql_users import SqlUserRepository


class SqlOpsRepository(SqlDatabase, ABC):
    def __init__(self) -> None:
        self.incidents = SqlIncidentRepository(self)
        self.gateways = SqlGatewayRepository(self)
        self.users = SqlUserRepository(self)
        self.security = SqlSecurityEventRepository(self)
        self.maintenance = SqlMaintenanceRepository(self)
        self.readings = self._readings_reader()

    def _readings_reader(self) -> SqlReadingsReader:
        """The readings reader of this dialect (PostgreSQL has a faster ``latest_values``)."""
        return SqlReadingsReader(self)

    # --- incidents and alerts (IncidentRepository) --------------------------------------------

    def upsert_alert(self, alert: AlertRecord) -> None:
        self.incidents.upsert_alert(alert)

    def upsert_incident(self, incident: IncidentRecord) -> None:
        self.incidents.upsert_incident(incident)

    def append_timeline(self, event: TimelineEvent) -> int | None:
        return self.incidents.append_timeline(event)

    def commit_step(self, step: StepWrite) -> StepOutcome:
        return self.incidents.commit_step(step)

    def load_service_state(self, name: str) -> bytes | None:
        return self.incidents.load_service_state(name)

    def save_service_state(self, name: str, data: bytes) -> None:
        self.incidents.save_service_state(name, data)

    def active_alerts(self) -> list[AlertRecord]:
        return self.incidents.active_alerts()

    def open_incidents(self) -> list[IncidentRecord]:
        return self.incidents.open_incidents()

    def list_alerts(
        self, sites: Sites, state: AlertState | None, limit: int, offset: int
    ) -> Page[AlertRecord]:
        return self.incidents.list_alerts(sites, state, limit, offset)

    def list_incidents(
        self, sites: Sites, state: IncidentState | None, limit: int, offset: int
    ) -> Page[IncidentRecord]:
        return self.incidents.list_incidents(sites, state, limit, offset)

    def get_incident(self, incident_id: str) -> IncidentDetail | None:
        return self.incidents.get_incident(incident_id)

    def apply_incident_action(self, incident_id: str, mutate: IncidentMutation) -> IncidentRecord | None:
        return self.incidents.apply_incident_action(incident_id, mutate)

    def open_incident_counts(self, sites: Sites) -> dict[str, dict[str, int]]:
        return self.incidents.open_incident_counts(sites)

    # --- gateways (GatewayRepository) ----------------------------------------------------------

    def upsert_gateway_status(self, status: GatewayStatusRecord) -> None:
        self.gateways.upsert_gateway_status(status)

    def list_gateway_status(self, sites: Sites) -> list[GatewayStatusRecord]:
        return self.gateways.list_gateway_status(sites)

    def batch_stats(self, gateways: Sequence[str], since: datetime) -> list[GatewayBatchStats]:
        return self.gateways.batch_stats(gateways, since)

    def dead_letters(self, sites: Sites, limit: int, offset: int) -> Page[DeadLetterRecord]:
        return self.gateways.dead_letters(sites, limit, offset)

    def dead_letter_counts(self, sites: Sites, since: datetime) -> dict[str, int]:
        return self.gateways.dead_letter_counts(sites, since)

    # --- users and audit (UserRepository) -------------------------------------------------------

    def get_user(self, name: str) -> UserRecord | None:
        return self.users.get_user(name)

    def list_users(self) -> list[UserRecord]:
        return self.users.list_users()

    def add_user(self, user: UserRecord) -> None:
        self.users.add_user(user)

    def update_user(
        self, name: str, *, password_hash: str | None = None, disabled: bool | None = None, at: datetime
    ) -> UserRecord:
        return self.users.update_user(name, password_hash=password_hash, disabled=disabled, at=at)

    def append_audit(self, entry: AuditEntry) -> int:
        return self.users.append_audit(entry)

    def audit_entries(self, limit: int, offset: int) -> Page[AuditEntry]:
        return self.users.audit_entries(limit, offset)

    # --- security events, maintenance -----------------------------------------------------------

    def insert_security_event(self, event: SecurityEventRecord) -> int:
        return self.security.insert_security_event(event)

    def security_events(self, sites: Sites, limit: int, offset: int) -> Page[SecurityEventRecord]:
        return self.security.security_events(sites, limit, offset)

    def upsert_maintenance(self, window: MaintenanceWindowRecord) -> None:
        self.maintenance.upsert_maintenance(window)

    def get_maintenance(self, window_id: str) -> MaintenanceWindowRecord | None:
        return self.maintenance.get_maintenance(window_id)

    def list_maintenance(self, sites: Sites, active_at: datetime | None) -> list[MaintenanceWindowRecord]:
        return self.maintenance.list_maintenance(sites, active_at)

    # --- readings (ReadingsReader) --------------------------------------------------------------

    def latest_values(self, pairs: Sequence[tuple[str, str]], since: datetime) -> list[LatestValue]:
        return self.readings.latest_values(pairs, since)

    def raw_readings(
        self, sensor: str, metric: str, start: datetime, end: datetime, limit: int
    ) -> list[RawPoint]:
        return self.readings.raw_readings(sensor, metric, start, end, limit)

    def rollup_readings(
        self, resolution: Resolution, sensor: str, metric: str, start: datetime, end: datetime
    ) -> list[RollupPoint]:
        return self.readings.rollup_readings(resolution, sensor, metric, start, end)

    def hourly_means(
        self, sensors: Sequence[str], metrics: Sequence[str], since: datetime
    ) -> dict[tuple[str, str], list[tuple[datetime, float]]]:
        return self.readings.hourly_means(sensors, metrics, since)
