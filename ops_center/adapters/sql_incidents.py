"""``SqlIncidentRepository``: alerts, incidents and their timeline (tables ``alerts``,
``incidents``, ``incident_events``), the ops service's evaluation steps and its saved rule
state (``ops_service_state``). A step also writes gateway status and the notification outbox
(ops_center/adapters/sql_gateways.py, sql_outbox.py) in its one transaction (issue #4)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final

from ops_center.adapters.ports import IncidentMutation, Sites, StepOutcome, StepWrite, StoredVersion
from ops_center.adapters.records import (
    AlertRecord,
    AlertState,
    IncidentDetail,
    IncidentRecord,
    IncidentState,
    Page,
    TimelineEvent,
)
from ops_center.adapters.sql_base import IN_CHUNK, Columns, Executor, Row, SqlDatabase, page_rows, utc
from ops_center.adapters.sql_gateways import write_gateway_status
from ops_center.adapters.sql_outbox import insert_notifications, insert_resolved
from ops_center.adapters.sql_users import write_audit

ALERT: Final = Columns(
    ("id", "rule", "site", "gateway", "sensor", "metric", "severity", "state", "opened_at", "cleared_at",
     "incident_id", "late", "value", "detail", "category", "message_vi", "message_en", "updated_at"),
    times=frozenset({"opened_at", "cleared_at", "updated_at"}),
    flags=frozenset({"late"}),
)
INCIDENT: Final = Columns(
    ("id", "site", "kind", "severity", "state", "title_vi", "title_en", "opened_at", "updated_at",
     "acknowledged_at", "resolved_at", "assignee", "escalated_at"),
    times=frozenset({"opened_at", "updated_at", "acknowledged_at", "resolved_at", "escalated_at"}),
)
ALERT_COLS: Final = ALERT.sql
INCIDENT_COLS: Final = INCIDENT.sql
_STATE_RANK: Final = "(CASE {} WHEN 'open' THEN 0 WHEN 'acknowledged' THEN 1 ELSE 2 END)"


def alert_record(r: Row) -> AlertRecord:
    return AlertRecord(**ALERT.read(r))


def incident_record(r: Row) -> IncidentRecord:
    return IncidentRecord(**INCIDENT.read(r))


def timeline_event(r: Row) -> TimelineEvent:
    return TimelineEvent(
        id=int(r[0]), incident_id=r[1], site=r[2], at=utc(r[3]), actor=r[4], action=r[5], detail=r[6]
    )


def append_timeline(db: SqlDatabase, x: Executor, e: TimelineEvent) -> int | None:
    # The entry key (migration 0003) makes a replayed entry a no-op: no row comes back.
    row = x.one(
        "INSERT INTO incident_events (incident_id, site, at, actor, action, detail) "
        "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING id",
        (e.incident_id, e.site, db._t(e.at), e.actor, e.action, e.detail),
    )
    return None if row is None else int(row[0])


class SqlIncidentRepository:
    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    # --- writes (ops service) ---------------------------------------------------------------

    def upsert_alert(self, alert: AlertRecord) -> None:
        with self._db._tx() as x:
            self._upsert_alert(x, alert)

    def _upsert_alert(self, x: Executor, a: AlertRecord) -> None:
        db = self._db
        x.run(
            f"INSERT INTO alerts ({ALERT_COLS}) VALUES ({ALERT.slots}) "
            "ON CONFLICT (id) DO UPDATE SET severity = excluded.severity, state = excluded.state, "
            "cleared_at = excluded.cleared_at, "
            "incident_id = COALESCE(excluded.incident_id, alerts.incident_id), late = excluded.late, "
            "value = excluded.value, detail = excluded.detail, category = excluded.category, "
            "message_vi = excluded.message_vi, message_en = excluded.message_en, "
            "updated_at = excluded.updated_at "
            "WHERE alerts.updated_at <= excluded.updated_at",
            ALERT.params(db, a),
        )

    def upsert_incident(self, incident: IncidentRecord) -> None:
        with self._db._tx() as x:
            self._upsert_incident(x, incident)

    def _upsert_incident(self, x: Executor, i: IncidentRecord) -> None:
        db = self._db
        rank_new, rank_old = _STATE_RANK.format("excluded.state"), _STATE_RANK.format("incidents.state")
        # A reopen (resolved -> open, the incident manager's recurrence rule) is the one
        # step back the service may take; otherwise a service that has not yet heard of a
        # person's acknowledge/resolve must not undo it.
        reopen = "(incidents.state = 'resolved' AND excluded.state = 'open')"
        x.run(
            f"INSERT INTO incidents ({INCIDENT_COLS}) VALUES ({INCIDENT.slots}) "
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
            f"updated_at = {db._greatest}(incidents.updated_at, excluded.updated_at)",
            INCIDENT.params(db, i),
        )

    def append_timeline(self, event: TimelineEvent) -> int | None:
        with self._db._tx() as x:
            return append_timeline(self._db, x, event)

    def commit_step(self, step: StepWrite) -> StepOutcome:
        db = self._db
        with db._tx() as x:
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
            fresh = tuple(append_timeline(db, x, e) is not None for e in step.timeline)
            for a in step.alerts:
                self._upsert_alert(x, a)
            for g in step.gateways:
                write_gateway_status(db, x, g)
            insert_notifications(db, x, step.notifications)
            for r in step.resolved:
                insert_resolved(db, x, r)
            if step.snapshot is not None:
                self._save_service_state(x, step.snapshot.name, step.snapshot.data)
        return StepOutcome(fresh, alerts_before, gateways_before)

    def _versions(self, x: Executor, query: str, column: str, ids: Sequence[str]) -> dict[str, StoredVersion]:
        out: dict[str, StoredVersion] = {}
        unique = sorted(set(ids))
        for k in range(0, len(unique), IN_CHUNK):
            clause, params = self._db._in(column, unique[k : k + IN_CHUNK])
            for key, at, state in x.rows(query.format(clause), params):
                out[str(key)] = StoredVersion(utc(at), str(state))
        return out

    def load_service_state(self, name: str) -> bytes | None:
        with self._db._read() as x:
            row = x.one("SELECT data FROM ops_service_state WHERE name = %s", (name,))
        return None if row is None else bytes(row[0])

    def save_service_state(self, name: str, data: bytes) -> None:
        with self._db._tx() as x:
            self._save_service_state(x, name, data)

    def _save_service_state(self, x: Executor, name: str, data: bytes) -> None:
        x.run(
            "INSERT INTO ops_service_state (name, saved_at, data) VALUES (%s, %s, %s) "
            "ON CONFLICT (name) DO UPDATE SET saved_at = excluded.saved_at, data = excluded.data",
            (name, self._db._t(datetime.now(UTC)), data),
        )

    def active_alerts(self) -> list[AlertRecord]:
        with self._db._read() as x:
            rows = x.rows(f"SELECT {ALERT_COLS} FROM alerts WHERE state = 'active' ORDER BY opened_at")
        return [alert_record(r) for r in rows]

    def open_incidents(self) -> list[IncidentRecord]:
        with self._db._read() as x:
            rows = x.rows(
                f"SELECT {INCIDENT_COLS} FROM incidents WHERE state <> 'resolved' ORDER BY opened_at"
            )
        return [incident_record(r) for r in rows]

    # --- reads (API) and a person's actions ---------------------------------------------------

    def _list_by_state(self, table: str, cols: str, sites: Sites, state: str | None, limit: int,
                       offset: int) -> tuple[list[Row], int]:
        """One page of ``table`` (alerts or incidents; names are constants of this module),
        newest first, within ``sites`` and optionally one ``state``; and the total."""
        where = self._db._site_where(sites)
        if where is None:
            return [], 0
        clause, params = where
        if state is not None:
            clause += " AND state = %s"
            params.append(state)
        with self._db._read() as x:
            return page_rows(x, cols, table, clause, params, "opened_at DESC, id", limit, offset)

    def list_alerts(
        self, sites: Sites, state: AlertState | None, limit: int, offset: int
    ) -> Page[AlertRecord]:
        rows, total = self._list_by_state("alerts", ALERT_COLS, sites, state, limit, offset)
        return Page([alert_record(r) for r in rows], total)

    def list_incidents(
        self, sites: Sites, state: IncidentState | None, limit: int, offset: int
    ) -> Page[IncidentRecord]:
        rows, total = self._list_by_state("incidents", INCIDENT_COLS, sites, state, limit, offset)
        return Page([incident_record(r) for r in rows], total)

    def get_incident(self, incident_id: str) -> IncidentDetail | None:
        with self._db._read() as x:
            row = x.one(f"SELECT {INCIDENT_COLS} FROM incidents WHERE id = %s", (incident_id,))
            if row is None:
                return None
            alerts = x.rows(
                f"SELECT {ALERT_COLS} FROM alerts WHERE incident_id = %s ORDER BY opened_at, id",
                (incident_id,),
            )
            events = x.rows(
                "SELECT id, incident_id, site, at, actor, action, detail FROM incident_events "
                "WHERE incident_id = %s ORDER BY at, id",
                (incident_id,),
            )
        return IncidentDetail(
            incident_record(row), [alert_record(r) for r in alerts], [timeline_event(r) for r in events]
        )

    def apply_incident_action(self, incident_id: str, mutate: IncidentMutation) -> IncidentRecord | None:
        db = self._db
        with db._tx() as x:
            row = x.one(
                f"SELECT {INCIDENT_COLS} FROM incidents WHERE id = %s{db._for_update}", (incident_id,)
            )
            if row is None:
                return None
            update = mutate(incident_record(row))
            i = update.incident
            x.run(
                "UPDATE incidents SET state = %s, acknowledged_at = %s, resolved_at = %s, assignee = %s, "
                "escalated_at = %s, updated_at = %s WHERE id = %s",
                (i.state, db._tn(i.acknowledged_at), db._tn(i.resolved_at), i.assignee,
                 db._tn(i.escalated_at), db._t(i.updated_at), i.id),
            )
            for event in update.events:
                append_timeline(db, x, event)  # a person's entry: its own time, never a replay
            write_audit(db, x, update.audit)
            for notice in update.resolved:
                insert_resolved(db, x, notice)
        return i

    def open_incident_counts(self, sites: Sites) -> dict[str, dict[str, int]]:
        where = self._db._site_where(sites)
        if where is None:
            return {}
        clause, params = where
        with self._db._read() as x:
            rows = x.rows(
                f"SELECT site, severity, count(*) FROM incidents WHERE {clause} AND state <> 'resolved' "
                "GROUP BY site, severity",
                params,
            )
        out: dict[str, dict[str, int]] = {}
        for site, severity, n in rows:
            out.setdefault(site, {})[severity] = int(n)
        return out
