"""``SqlSecurityEventRepository`` (table ``security_events``) and ``SqlMaintenanceRepository``
(``maintenance_windows``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from ops_center.adapters.ports import Sites
from ops_center.adapters.records import MaintenanceWindowRecord, Page, SecurityEventRecord
from ops_center.adapters.sql_base import Columns, Row, SqlDatabase, page_rows, utc

MAINTENANCE: Final = Columns(("id", "site", "scope", "target", "starts_at", "ends_at", "set_by", "reason"),
                             times=frozenset({"starts_at", "ends_at"}))
MAINTENANCE_COLS: Final = MAINTENANCE.sql


class SqlSecurityEventRepository:
    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    def insert_security_event(self, event: SecurityEventRecord) -> int:
        e, db = event, self._db
        with db._tx() as x:
            row = x.one(
                "INSERT INTO security_events (at, source, kind, site, gateway, client, ip, detail) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (db._t(e.at), e.source, e.kind, e.site, e.gateway, e.client, e.ip, e.detail),
            )
        assert row is not None
        return int(row[0])

    def security_events(self, sites: Sites, limit: int, offset: int) -> Page[SecurityEventRecord]:
        where = self._db._site_where(sites)
        if where is None:
            return Page([], 0)
        clause, params = where
        with self._db._read() as x:
            rows, total = page_rows(
                x, "id, at, source, kind, site, gateway, client, ip, detail", "security_events", clause,
                params, "id DESC", limit, offset,
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
        return Page(items, total)


def maintenance_window(r: Row) -> MaintenanceWindowRecord:
    return MaintenanceWindowRecord(**MAINTENANCE.read(r))


class SqlMaintenanceRepository:
    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    def upsert_maintenance(self, window: MaintenanceWindowRecord) -> None:
        w, db = window, self._db
        with db._tx() as x:
            x.run(
                f"INSERT INTO maintenance_windows ({MAINTENANCE_COLS}, created_at) "
                f"VALUES ({MAINTENANCE.slots}, %s) "
                "ON CONFLICT (id) DO UPDATE SET starts_at = excluded.starts_at, ends_at = excluded.ends_at, "
                "reason = excluded.reason",
                (*MAINTENANCE.params(db, w), db._t(datetime.now(UTC))),
            )

    def get_maintenance(self, window_id: str) -> MaintenanceWindowRecord | None:
        with self._db._read() as x:
            row = x.one(f"SELECT {MAINTENANCE_COLS} FROM maintenance_windows WHERE id = %s", (window_id,))
        return None if row is None else maintenance_window(row)

    def list_maintenance(self, sites: Sites, active_at: datetime | None) -> list[MaintenanceWindowRecord]:
        db = self._db
        where = db._site_where(sites)
        if where is None:
            return []
        clause, params = where
        if active_at is not None:
            clause += " AND starts_at <= %s AND (ends_at IS NULL OR ends_at > %s)"
            params += [db._t(active_at), db._t(active_at)]
        with db._read() as x:
            rows = x.rows(
                f"SELECT {MAINTENANCE_COLS} FROM maintenance_windows WHERE {clause} ORDER BY starts_at, id",
                params,
            )
        return [maintenance_window(r) for r in rows]
