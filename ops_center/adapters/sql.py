"""``SqlOpsRepository``: the SQL shared by the SQLite and PostgreSQL adapters.

Queries are written once with ``%s`` parameters (the SQLite adapter turns them into ``?``);
what differs by dialect (time values, lists, "latest per series", locking) are small hooks
the adapters override. Identifiers are never built from input: table names come from
fixed mappings here.
"""

from __future__ import annotations

import base64
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, Final, Protocol, cast

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
    notification_id,
)
from ops_center.adapters.repository import (
    IncidentMutation,
    Resolution,
    Sites,
    StepOutcome,
    StepWrite,
    StoredVersion,
    UnknownUser,
)

Row = tuple[Any, ...]
_ROLLUP_TABLES: Final = {"1m": "readings_1m", "1h": "readings_1h"}
_PREVIEW_BYTES: Final = 512

_ALERT_COLS: Final = (
    "id, rule, site, gateway, sensor, metric, severity, state, opened_at, cleared_at, "
    "incident_id, late, value, detail, category, message_vi, message_en, updated_at"
)
_INCIDENT_COLS: Final = (
    "id, site, kind, severity, state, title_vi, title_en, opened_at, updated_at, "
    "acknowledged_at, resolved_at, assignee, escalated_at"
)
_STATE_RANK: Final = "(CASE {} WHEN 'open' THEN 0 WHEN 'acknowledged' THEN 1 ELSE 2 END)"
_IN_CHUNK: Final = 500  # ids per IN (...) list: under SQLite's limit on parameters
_MAINTENANCE_COLS: Final = "id, site, scope, target, starts_at, ends_at, set_by, reason"
NOTIFICATION_COLS: Final = (
    "id, incident_id, site, contact, channel, reason, step, state, attempts, created_at, "
    "next_attempt_at, last_attempt_at, sent_at, error, subject, body, delivery, ack_used_at"
)


class Executor(Protocol):
    def rows(self, query: str, params: Sequence[object] = ()) -> list[Row]: ...

    def one(self, query: str, params: Sequence[object] = ()) -> Row | None: ...

    def run(self, query: str, params: Sequence[object] = ()) -> None: ...


def utc(value: object) -> datetime:
    # Called for every time of every row of a list page: the common cases return early.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    elif not isinstance(value, datetime):
        raise TypeError(f"not a time: {value!r}")
    tz = value.tzinfo
    if tz is UTC:
        return value
    return value.astimezone(UTC) if tz else value.replace(tzinfo=UTC)


def utc_or_none(value: object) -> datetime | None:
    return None if value is None else utc(value)


def preview(payload: bytes) -> str:
    """The start of a dead letter's raw bytes: text when it is UTF-8, else base64."""
    head = payload[:_PREVIEW_BYTES]
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start >= len(head) - 3 and len(payload) > _PREVIEW_BYTES:  # cut inside a character
            return head[: exc.start].decode("utf-8")
        return "base64:" + base64.b64encode(head).decode("ascii")


class SqlOpsRepository(ABC):
    # --- dialect hooks --------------------------------------------------------------------

    @abstractmethod
    def _tx(self) -> AbstractContextManager[Executor]:
        """A transaction (committed on success, rolled back on error)."""

    @abstractmethod
    def _read(self) -> AbstractContextManager[Executor]:
        """A read-only unit of work."""

    @abstractmethod
    def _t(self, value: datetime) -> object:
        """A time as a query parameter."""

    @abstractmethod
    def _sites_param(self, sites: Sequence[str]) -> object: ...

    @abstractmethod
    def _sites_value(self, value: object) -> tuple[str, ...]: ...

    _for_update: str = ""
    _greatest: str = "max"
    _payload_len: str = "length(payload)"
    _payload_head: str = f"substr(payload, 1, {_PREVIEW_BYTES})"

    def _tn(self, value: datetime | None) -> object:
        return None if value is None else self._t(value)

    @staticmethod
    def _in(column: str, values: Sequence[str]) -> tuple[str, list[object]]:
        return f"{column} IN ({', '.join(['%s'] * len(values))})", list(values)

    def _site_where(self, sites: Sites, column: str = "site") -> tuple[str, list[object]] | None:
        """A WHERE fragment for ``sites``; None when nothing can match (empty filter)."""
        if sites is None:
            return "TRUE", []
        if not sites:
            return None
        return self._in(column, sites)

    # --- rows -----------------------------------------------------------------------------

    @staticmethod
    def _alert(r: Row) -> AlertRecord:
        return AlertRecord(
            id=r[0],
            rule=r[1],
            site=r[2],
            gateway=r[3],
            sensor=r[4],
            metric=r[5],
            severity=r[6],
            state=r[7],
            opened_at=utc(r[8]),
            cleared_at=utc_or_none(r[9]),
            incident_id=r[10],
            late=bool(r[11]),
            value=r[12],
            detail=r[13],
            category=r[14],
            message_vi=r[15],
            message_en=r[16],
            updated_at=utc(r[17]),
        )

    @staticmethod
    def _incident(r: Row) -> IncidentRecord:
        return IncidentRecord(
            id=r[0],
            site=r[1],
            kind=r[2],
            severity=r[3],
            state=r[4],
            title_vi=r[5],
            title_en=r[6],
            opened_at=utc(r[7]),
            updated_at=utc(r[8]),
            acknowledged_at=utc_or_none(r[9]),
            resolved_at=utc_or_none(r[10]),
            assignee=r[11],
            escalated_at=utc_or_none(r[12]),
        )

    def _user(self, r: Row) -> UserRecord:
        return UserRecord(
            name=r[0],
            password_hash=r[1],
            role=r[2],
            sites=self._sites_value(r[3]),
            disabled=bool(r[4]),
            token_version=int(r[5]),
            created_at=utc_or_none(r[6]),
            updated_at=utc_or_none(r[7]),
        )

    @staticmethod
    def _timeline(r: Row) -> TimelineEvent:
        return TimelineEvent(
            id=int(r[0]), incident_id=r[1], site=r[2], at=utc(r[3]), actor=r[4], action=r[5], detail=r[6]
        )

    @staticmethod
    def _gateway_status(r: Row) -> GatewayStatusRecord:
        return GatewayStatusRecord(
            gateway=r[0],
            site=r[1],
            state=r[2],
            last_seen=utc(r[3]),
            outbox_batches=int(r[4]),
            outbox_oldest=utc_or_none(r[5]),
            dropped_batches=int(r[6]),
            last_seq=int(r[7]),
            agent=r[8],
        )

    # --- writes (ops service) -----------------------------------------------------------------

    def upsert_alert(self, alert: AlertRecord) -> None:
        with self._tx() as x:
            self._upsert_alert(x, alert)

    def _upsert_alert(self, x: Executor, a: AlertRecord) -> None:
        x.run(
            f"INSERT INTO alerts ({_ALERT_COLS}) VALUES "
            "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (id) DO UPDATE SET severity = excluded.severity, state = excluded.state, "
            "cleared_at = excluded.cleared_at, "
            "incident_id = COALESCE(excluded.incident_id, alerts.incident_id), late = excluded.late, "
            "value = excluded.value, detail = excluded.detail, category = excluded.category, "
            "message_vi = excluded.message_vi, message_en = excluded.message_en, "
            "updated_at = excluded.updated_at "
            "WHERE alerts.updated_at <= excluded.updated_at",
            (
                a.id,
                a.rule,
                a.site,
                a.gateway,
                a.sensor,
                a.metric,
                a.severity,
                a.state,
                self._t(a.opened_at),
                self._tn(a.cleared_at),
                a.incident_id,
                a.late,
                a.value,
                a.detail,
                a.category,
                a.message_vi,
                a.message_en,
                self._t(a.updated_at),
            ),
        )

    def upsert_incident(self, incident: IncidentRecord) -> None:
        with self._tx() as x:
            self._upsert_incident(x, incident)

    def _upsert_incident(self, x: Executor, i: IncidentRecord) -> None:
        rank_new, rank_old = _STATE_RANK.format("excluded.state"), _STATE_RANK.format("incidents.state")
        # A reopen (resolved -> open, the incident manager's recurrence rule) is the one
        # step back the service may take; otherwise a service that has not yet heard of a
        # person's acknowledge/resolve must not undo it.
        reopen = "(incidents.state = 'resolved' AND excluded.state = 'open')"
        x.run(
            f"INSERT INTO incidents ({_INCIDENT_COLS}) VALUES "
            "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, severity = excluded.severity, "
            "title_vi = excluded.title_vi, title_en = excluded.title_en, "
            f"state = CASE WHEN {reopen} OR {rank_new} > {rank_old} THEN excluded.state "
            "ELSE incidents.state END, "
            f"acknowledged_at = CASE WHEN {reopen} THEN excluded.acknowledged_at "
            "ELSE COALESCE(incidents.acknowledged_at, excluded.acknowledged_at) END, "
            f"resolved_at = CASE WHEN {reopen} THEN excluded.resolved_at "
            "ELSE COALESCE(incidents.resolved_at, excluded.resolved_at) END, "
            f"escalated_at = CASE WHEN {reopen} THEN excluded.escalated_at "
            "ELSE COALESCE(incidents.escalated_at, excluded.escalated_at) END, "
            "assignee = COALESCE(excluded.assignee, incidents.assignee), "
            f"updated_at = {self._greatest}(incidents.updated_at, excluded.updated_at)",
            self._incident_params(i),
        )

    def _incident_params(self, i: IncidentRecord) -> tuple[object, ...]:
        return (
            i.id,
            i.site,
            i.kind,
            i.severity,
            i.state,
            i.title_vi,
            i.title_en,
            self._t(i.opened_at),
            self._t(i.updated_at),
            self._tn(i.acknowledged_at),
            self._tn(i.resolved_at),
            i.assignee,
            self._tn(i.escalated_at),
        )

    def append_timeline(self, event: TimelineEvent) -> int | None:
        with self._tx() as x:
            return self._append_timeline(x, event)

    def _append_timeline(self, x: Executor, e: TimelineEvent) -> int | None:
        # The entry key (migration 0003) makes a replayed entry a no-op: no row comes back.
        row = x.one(
            "INSERT INTO incident_events (incident_id, site, at, actor, action, detail) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING id",
            (e.incident_id, e.site, self._t(e.at), e.actor, e.action, e.detail),
        )
        return None if row is None else int(row[0])

    def commit_step(self, step: StepWrite) -> StepOutcome:
        with self._tx() as x:
            alerts_before = self._versions(
                x,
                "SELECT id, updated_at, state || '/' || severity FROM alerts WHERE {}",
                "id",
                [a.id for a in step.alerts],
            )
            gateways_before = self._versions(
                x,
                "SELECT gateway, last_seen, state FROM gateway_status WHERE {}",
                "gateway",
                [g.gateway for g in step.gateways],
            )
            for i in step.incidents:
                self._upsert_incident(x, i)
            fresh = tuple(self._append_timeline(x, e) is not None for e in step.timeline)
            for a in step.alerts:
                self._upsert_alert(x, a)
            for g in step.gateways:
                self._upsert_gateway_status(x, g)
            self._insert_notifications(x, step.notifications)
            for r in step.resolved:
                self._insert_resolved(x, r)
            if step.snapshot is not None:
                self._save_service_state(x, step.snapshot.name, step.snapshot.data)
        return StepOutcome(fresh, alerts_before, gateways_before)

    # --- the notification outbox (migration 0006; the rest: adapters/notifications.py) ----------

    def _insert_notifications(self, x: Executor, rows: Sequence[NotificationRecord]) -> int:
        """Insert new notifications; a key already stored (a replay) is left as it is."""
        new = 0
        for n in rows:
            row = x.one(
                f"INSERT INTO notifications ({NOTIFICATION_COLS}) VALUES "
                "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT DO NOTHING RETURNING id",
                (n.id, n.incident_id, n.site, n.contact, n.channel, n.reason, n.step, n.state, n.attempts,
                 self._t(n.created_at), self._t(n.next_attempt_at), self._tn(n.last_attempt_at),
                 self._tn(n.sent_at), n.error, n.subject, n.body, n.delivery, self._tn(n.ack_used_at)),
            )
            new += row is not None
        return new

    def _insert_resolved(self, x: Executor, r: ResolvedNotice) -> int:
        """Whoever was told of the incident (on each channel) is told it is resolved."""
        pairs = x.rows(
            "SELECT DISTINCT contact, channel FROM notifications WHERE incident_id = %s "
            "AND reason <> 'resolved' ORDER BY contact, channel",
            (r.incident_id,),
        )
        return self._insert_notifications(x, [
            NotificationRecord(
                id=notification_id(r.incident_id, c, ch, "resolved"), incident_id=r.incident_id, site=r.site,
                contact=c, channel=ch, reason="resolved", state="pending", created_at=r.at,
                next_attempt_at=r.at, subject=r.subject, body=r.body)
            for c, ch in pairs
        ])

    def _versions(self, x: Executor, query: str, column: str, ids: Sequence[str]) -> dict[str, StoredVersion]:
        out: dict[str, StoredVersion] = {}
        unique = sorted(set(ids))
        for k in range(0, len(unique), _IN_CHUNK):
            clause, params = self._in(column, unique[k : k + _IN_CHUNK])
            for key, at, state in x.rows(query.format(clause), params):
                out[str(key)] = StoredVersion(utc(at), str(state))
        return out

    def load_service_state(self, name: str) -> bytes | None:
        with self._read() as x:
            row = x.one("SELECT data FROM ops_service_state WHERE name = %s", (name,))
        return None if row is None else bytes(row[0])

    def save_service_state(self, name: str, data: bytes) -> None:
        with self._tx() as x:
            self._save_service_state(x, name, data)

    def _save_service_state(self, x: Executor, name: str, data: bytes) -> None:
        x.run(
            "INSERT INTO ops_service_state (name, saved_at, data) VALUES (%s, %s, %s) "
            "ON CONFLICT (name) DO UPDATE SET saved_at = excluded.saved_at, data = excluded.data",
            (name, self._t(datetime.now(UTC)), data),
        )

    def upsert_gateway_status(self, status: GatewayStatusRecord) -> None:
        with self._tx() as x:
            self._upsert_gateway_status(x, status)

    def _upsert_gateway_status(self, x: Executor, s: GatewayStatusRecord) -> None:
        x.run(
            "INSERT INTO gateway_status (gateway, site, state, last_seen, outbox_batches, "
            "outbox_oldest, dropped_batches, last_seq, agent, updated_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (gateway) DO UPDATE SET site = excluded.site, state = excluded.state, "
            "last_seen = excluded.last_seen, outbox_batches = excluded.outbox_batches, "
            "outbox_oldest = excluded.outbox_oldest, dropped_batches = excluded.dropped_batches, "
            "last_seq = excluded.last_seq, agent = excluded.agent, updated_at = excluded.updated_at "
            "WHERE gateway_status.last_seen <= excluded.last_seen",
            (
                s.gateway,
                s.site,
                s.state,
                self._t(s.last_seen),
                s.outbox_batches,
                self._tn(s.outbox_oldest),
                s.dropped_batches,
                s.last_seq,
                s.agent,
                self._t(datetime.now(UTC)),
            ),
        )

    def insert_security_event(self, event: SecurityEventRecord) -> int:
        e = event
        with self._tx() as x:
            row = x.one(
                "INSERT INTO security_events (at, source, kind, site, gateway, client, ip, detail) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (self._t(e.at), e.source, e.kind, e.site, e.gateway, e.client, e.ip, e.detail),
            )
        assert row is not None
        return int(row[0])

    def append_audit(self, entry: AuditEntry) -> int:
        with self._tx() as x:
            return self._append_audit(x, entry)

    def _append_audit(self, x: Executor, e: AuditEntry) -> int:
        row = x.one(
            "INSERT INTO audit_log (at, actor, action, target, site, ip, outcome, detail) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (self._t(e.at), e.actor, e.action, e.target, e.site, e.ip, e.outcome, e.detail),
        )
        assert row is not None
        return int(row[0])

    def upsert_maintenance(self, window: MaintenanceWindowRecord) -> None:
        w = window
        with self._tx() as x:
            x.run(
                "INSERT INTO maintenance_windows (id, site, scope, target, starts_at, ends_at, set_by, "
                "reason, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (id) DO UPDATE SET starts_at = excluded.starts_at, ends_at = excluded.ends_at, "
                "reason = excluded.reason",
                (
                    w.id,
                    w.site,
                    w.scope,
                    w.target,
                    self._t(w.starts_at),
                    self._tn(w.ends_at),
                    w.set_by,
                    w.reason,
                    self._t(datetime.now(UTC)),
                ),
            )

    def get_maintenance(self, window_id: str) -> MaintenanceWindowRecord | None:
        with self._read() as x:
            row = x.one(f"SELECT {_MAINTENANCE_COLS} FROM maintenance_windows WHERE id = %s", (window_id,))
        return None if row is None else self._maintenance(row)

    @staticmethod
    def _maintenance(r: Row) -> MaintenanceWindowRecord:
        return MaintenanceWindowRecord(
            id=r[0],
            site=r[1],
            scope=cast(Any, r[2]),
            target=r[3],
            starts_at=utc(r[4]),
            ends_at=utc_or_none(r[5]),
            set_by=r[6],
            reason=r[7],
        )

    def active_alerts(self) -> list[AlertRecord]:
        with self._read() as x:
            rows = x.rows(f"SELECT {_ALERT_COLS} FROM alerts WHERE state = 'active' ORDER BY opened_at")
        return [self._alert(r) for r in rows]

    def open_incidents(self) -> list[IncidentRecord]:
        with self._read() as x:
            rows = x.rows(
                f"SELECT {_INCIDENT_COLS} FROM incidents WHERE state <> 'resolved' ORDER BY opened_at"
            )
        return [self._incident(r) for r in rows]

    # --- users -----------------------------------------------------------------------------

    _USER_COLS: Final = "name, password_hash, role, sites, disabled, token_version, created_at, updated_at"

    def get_user(self, name: str) -> UserRecord | None:
        with self._read() as x:
            row = x.one(f"SELECT {self._USER_COLS} FROM users WHERE name = %s", (name,))
        return None if row is None else self._user(row)

    def list_users(self) -> list[UserRecord]:
        with self._read() as x:
            rows = x.rows(f"SELECT {self._USER_COLS} FROM users ORDER BY name")
        return [self._user(r) for r in rows]

    def _insert_user(self, x: Executor, u: UserRecord) -> None:
        now = self._t(u.created_at or datetime.now(UTC))
        x.run(
            f"INSERT INTO users ({self._USER_COLS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (
                u.name,
                u.password_hash,
                u.role,
                self._sites_param(u.sites),
                u.disabled,
                u.token_version,
                now,
                now,
            ),
        )

    def update_user(
        self, name: str, *, password_hash: str | None = None, disabled: bool | None = None, at: datetime
    ) -> UserRecord:
        with self._tx() as x:
            row = x.one(f"SELECT {self._USER_COLS} FROM users WHERE name = %s{self._for_update}", (name,))
            if row is None:
                raise UnknownUser(name)
            current = self._user(row)
            new_hash = password_hash if password_hash is not None else current.password_hash
            new_disabled = disabled if disabled is not None else current.disabled
            x.run(
                "UPDATE users SET password_hash = %s, disabled = %s, token_version = token_version + 1, "
                "updated_at = %s WHERE name = %s",
                (new_hash, new_disabled, self._t(at), name),
            )
            updated = x.one(f"SELECT {self._USER_COLS} FROM users WHERE name = %s", (name,))
        assert updated is not None
        return self._user(updated)

    # --- alerts and incidents ------------------------------------------------------------------

    def _list_by_state(self, table: str, cols: str, sites: Sites, state: str | None, limit: int,
                       offset: int) -> tuple[list[Row], int]:
        """One page of ``table`` (alerts or incidents; names are constants of this module),
        newest first, within ``sites`` and optionally one ``state``; and the total."""
        where = self._site_where(sites)
        if where is None:
            return [], 0
        clause, params = where
        if state is not None:
            clause += " AND state = %s"
            params.append(state)
        with self._read() as x:
            total = x.one(f"SELECT count(*) FROM {table} WHERE {clause}", params)
            rows = x.rows(
                f"SELECT {cols} FROM {table} WHERE {clause} "
                "ORDER BY opened_at DESC, id LIMIT %s OFFSET %s",
                [*params, limit, offset],
            )
        return rows, int(total[0]) if total else 0

    def list_alerts(
        self, sites: Sites, state: AlertState | None, limit: int, offset: int
    ) -> Page[AlertRecord]:
        rows, total = self._list_by_state("alerts", _ALERT_COLS, sites, state, limit, offset)
        return Page([self._alert(r) for r in rows], total)

    def list_incidents(
        self, sites: Sites, state: IncidentState | None, limit: int, offset: int
    ) -> Page[IncidentRecord]:
        rows, total = self._list_by_state("incidents", _INCIDENT_COLS, sites, state, limit, offset)
        return Page([self._incident(r) for r in rows], total)

    def get_incident(self, incident_id: str) -> IncidentDetail | None:
        with self._read() as x:
            row = x.one(f"SELECT {_INCIDENT_COLS} FROM incidents WHERE id = %s", (incident_id,))
            if row is None:
                return None
            alerts = x.rows(
                f"SELECT {_ALERT_COLS} FROM alerts WHERE incident_id = %s ORDER BY opened_at, id",
                (incident_id,),
            )
            events = x.rows(
                "SELECT id, incident_id, site, at, actor, action, detail FROM incident_events "
                "WHERE incident_id = %s ORDER BY at, id",
                (incident_id,),
            )
        return IncidentDetail(
            self._incident(row), [self._alert(r) for r in alerts], [self._timeline(r) for r in events]
        )

    def apply_incident_action(self, incident_id: str, mutate: IncidentMutation) -> IncidentRecord | None:
        with self._tx() as x:
            row = x.one(
                f"SELECT {_INCIDENT_COLS} FROM incidents WHERE id = %s{self._for_update}", (incident_id,)
            )
            if row is None:
                return None
            update = mutate(self._incident(row))
            i = update.incident
            x.run(
                "UPDATE incidents SET state = %s, acknowledged_at = %s, resolved_at = %s, assignee = %s, "
                "escalated_at = %s, updated_at = %s WHERE id = %s",
                (
                    i.state,
                    self._tn(i.acknowledged_at),
                    self._tn(i.resolved_at),
                    i.assignee,
                    self._tn(i.escalated_at),
                    self._t(i.updated_at),
                    i.id,
                ),
            )
            for event in update.events:
                self._append_timeline(x, event)  # a person's entry: its own time, never a replay
            self._append_audit(x, update.audit)
            for notice in update.resolved:
                self._insert_resolved(x, notice)
        return i

    def open_incident_counts(self, sites: Sites) -> dict[str, dict[str, int]]:
        where = self._site_where(sites)
        if where is None:
            return {}
        clause, params = where
        with self._read() as x:
            rows = x.rows(
                f"SELECT site, severity, count(*) FROM incidents WHERE {clause} AND state <> 'resolved' "
                "GROUP BY site, severity",
                params,
            )
        out: dict[str, dict[str, int]] = {}
        for site, severity, n in rows:
            out.setdefault(site, {})[severity] = int(n)
        return out

    def list_gateway_status(self, sites: Sites) -> list[GatewayStatusRecord]:
        where = self._site_where(sites)
        if where is None:
            return []
        clause, params = where
        with self._read() as x:
            rows = x.rows(
                "SELECT gateway, site, state, last_seen, outbox_batches, outbox_oldest, dropped_batches, "
                f"last_seq, agent FROM gateway_status WHERE {clause} ORDER BY gateway",
                params,
            )
        return [self._gateway_status(r) for r in rows]

    # --- readings (the ingest's tables) ------------------------------------------------------

    def latest_values(self, pairs: Sequence[tuple[str, str]], since: datetime) -> list[LatestValue]:
        out: list[LatestValue] = []
        with self._read() as x:
            for sensor, metric in pairs:
                row = x.one(
                    "SELECT time, value, quality FROM readings WHERE sensor = %s AND metric = %s "
                    "AND time >= %s ORDER BY time DESC LIMIT 1",
                    (sensor, metric, self._t(since)),
                )
                if row is not None:
                    out.append(LatestValue(sensor, metric, utc(row[0]), float(row[1]), str(row[2])))
        return out

    def raw_readings(
        self, sensor: str, metric: str, start: datetime, end: datetime, limit: int
    ) -> list[RawPoint]:
        with self._read() as x:
            rows = x.rows(
                "SELECT time, value, quality FROM readings WHERE sensor = %s AND metric = %s "
                "AND time >= %s AND time < %s ORDER BY time LIMIT %s",
                (sensor, metric, self._t(start), self._t(end), limit),
            )
        return [RawPoint(utc(r[0]), float(r[1]), str(r[2])) for r in rows]

    def rollup_readings(
        self, resolution: Resolution, sensor: str, metric: str, start: datetime, end: datetime
    ) -> list[RollupPoint]:
        table = _ROLLUP_TABLES[resolution]
        with self._read() as x:
            rows = x.rows(
                f"SELECT bucket, min, max, count, sum FROM {table} WHERE sensor = %s AND metric = %s "
                "AND bucket >= %s AND bucket < %s ORDER BY bucket",
                (sensor, metric, self._t(start), self._t(end)),
            )
        return [RollupPoint(utc(r[0]), float(r[1]), float(r[2]), int(r[3]), float(r[4])) for r in rows]

    def hourly_means(
        self, sensors: Sequence[str], metrics: Sequence[str], since: datetime
    ) -> dict[tuple[str, str], list[tuple[datetime, float]]]:
        if not sensors or not metrics:
            return {}
        s_clause, s_params = self._in("sensor", sensors)
        m_clause, m_params = self._in("metric", metrics)
        with self._read() as x:
            rows = x.rows(
                f"SELECT sensor, metric, bucket, avg FROM readings_1h WHERE {s_clause} AND {m_clause} "
                "AND bucket >= %s ORDER BY bucket",
                [*s_params, *m_params, self._t(since)],
            )
        out: dict[tuple[str, str], list[tuple[datetime, float]]] = {}
        for sensor, metric, bucket, avg in rows:
            out.setdefault((sensor, metric), []).append((utc(bucket), float(avg)))
        return out

    def batch_stats(self, gateways: Sequence[str], since: datetime) -> list[GatewayBatchStats]:
        if not gateways:
            return []
        clause, params = self._in("gateway", gateways)
        with self._read() as x:
            rows = x.rows(
                "SELECT gateway, count(*), count(*) FILTER (WHERE outcome = 'stored'), min(seq), max(seq), "
                f"max(received_at) FROM ingest_batches WHERE {clause} AND received_at >= %s "
                "GROUP BY gateway",
                [*params, self._t(since)],
            )
            drops: dict[str, int | None] = dict(
                x.rows(
                    f"SELECT gateway, max(through_seq) FROM gateway_drops WHERE {clause} "
                    "AND declared_at >= %s GROUP BY gateway",
                    [*params, self._t(since)],
                )
            )
        return [
            GatewayBatchStats(
                gateway=r[0],
                batches=int(r[1]),
                stored=int(r[2]),
                min_seq=int(r[3]),
                max_seq=int(r[4]),
                last_received=utc(r[5]),
                dropped_through=int(drops.get(r[0]) or 0),
            )
            for r in rows
        ]

    # --- dead letters, audit, security --------------------------------------------------------

    def dead_letters(self, sites: Sites, limit: int, offset: int) -> Page[DeadLetterRecord]:
        where = self._site_where(sites)
        if where is None:
            return Page([], 0)
        clause, params = where
        with self._read() as x:
            total = x.one(f"SELECT count(*) FROM dead_letters WHERE {clause}", params)
            rows = x.rows(
                f"SELECT id, received_at, topic, gateway, site, seq, reason, detail, {self._payload_len}, "
                f"{self._payload_head} FROM dead_letters WHERE {clause} "
                "ORDER BY received_at DESC, id DESC LIMIT %s OFFSET %s",
                [*params, limit, offset],
            )
        items = [
            DeadLetterRecord(
                id=int(r[0]),
                received_at=utc(r[1]),
                topic=r[2],
                gateway=r[3],
                site=r[4],
                seq=None if r[5] is None else int(r[5]),
                reason=r[6],
                detail=r[7],
                payload_bytes=int(r[8]),
                payload_preview=preview(bytes(r[9])),
            )
            for r in rows
        ]
        return Page(items, int(total[0]) if total else 0)

    def dead_letter_counts(self, sites: Sites, since: datetime) -> dict[str, int]:
        where = self._site_where(sites)
        if where is None:
            return {}
        clause, params = where
        with self._read() as x:
            rows = x.rows(
                f"SELECT site, count(*) FROM dead_letters WHERE {clause} AND site IS NOT NULL "
                "AND received_at >= %s GROUP BY site",
                [*params, self._t(since)],
            )
        return {str(site): int(n) for site, n in rows}

    def audit_entries(self, limit: int, offset: int) -> Page[AuditEntry]:
        with self._read() as x:
            total = x.one("SELECT count(*) FROM audit_log")
            rows = x.rows(
                "SELECT id, at, actor, action, target, site, ip, outcome, detail FROM audit_log "
                "ORDER BY id DESC LIMIT %s OFFSET %s",
                (limit, offset),
            )
        items = [
            AuditEntry(
                id=int(r[0]),
                at=utc(r[1]),
                actor=r[2],
                action=r[3],
                target=r[4],
                site=r[5],
                ip=r[6],
                outcome=r[7],
                detail=r[8],
            )
            for r in rows
        ]
        return Page(items, int(total[0]) if total else 0)

    def security_events(self, sites: Sites, limit: int, offset: int) -> Page[SecurityEventRecord]:
        where = self._site_where(sites)
        if where is None:
            return Page([], 0)
        clause, params = where
        with self._read() as x:
            total = x.one(f"SELECT count(*) FROM security_events WHERE {clause}", params)
            rows = x.rows(
                "SELECT id, at, source, kind, site, gateway, client, ip, detail FROM security_events "
                f"WHERE {clause} ORDER BY id DESC LIMIT %s OFFSET %s",
                [*params, limit, offset],
            )
        items = [
            SecurityEventRecord(
                id=int(r[0]),
                at=utc(r[1]),
                source=r[2],
                kind=r[3],
                site=r[4],
                gateway=r[5],
                client=r[6],
                ip=r[7],
                detail=r[8],
            )
            for r in rows
        ]
        return Page(items, int(total[0]) if total else 0)

    def list_maintenance(self, sites: Sites, active_at: datetime | None) -> list[MaintenanceWindowRecord]:
        where = self._site_where(sites)
        if where is None:
            return []
        clause, params = where
        if active_at is not None:
            clause += " AND starts_at <= %s AND (ends_at IS NULL OR ends_at > %s)"
            params += [self._t(active_at), self._t(active_at)]
        with self._read() as x:
            rows = x.rows(
                f"SELECT {_MAINTENANCE_COLS} FROM maintenance_windows WHERE {clause} ORDER BY starts_at, id",
                params,
            )
        return [self._maintenance(r) for r in rows]
