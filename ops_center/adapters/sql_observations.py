"""``SqlObservationStore``: SensorThings Observations (the ingest's ``readings``) filtered,
ordered, paged and counted in SQL, on the ops store's own connections. The port and the query
model: ops_center/adapters/observations.py. Column names come from the mappings below, values
are parameters."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final

from ops_center.adapters.observations import ObservationQuery, ObservationRow
from ops_center.adapters.repository import OpsRepository
from ops_center.adapters.sql_base import SqlDatabase, utc

_OPS: Final = {"eq": "=", "ne": "<>", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}
_COLUMNS: Final = {"time": "time", "result": "value", "id": "sensor, metric, time"}


class SqlObservationStore:
    def __init__(self, repo: OpsRepository) -> None:
        if not isinstance(repo, SqlDatabase):
            raise TypeError(f"SqlObservationStore needs a SQL repository, not {type(repo).__name__}")
        self._repo = repo

    def _where(self, q: ObservationQuery) -> tuple[str, list[object]] | None:
        clauses: list[str] = []
        params: list[object] = []
        if q.series is not None:
            clauses.append("sensor = %s AND metric = %s")
            params += list(q.series)
        if q.sites is not None:
            if not q.sites:
                return None
            clauses.append(f"site IN ({', '.join(['%s'] * len(q.sites))})")
            params += list(q.sites)
        for c in q.conditions:
            clauses.append(f"{_COLUMNS[c.field]} {_OPS[c.op]} %s")
            params.append(self._repo._t(c.value) if isinstance(c.value, datetime) else c.value)
        return " AND ".join(clauses) or "TRUE", params

    def observations(self, q: ObservationQuery) -> list[ObservationRow]:
        where = self._where(q)
        if where is None or q.limit <= 0:
            return []
        sql, params = where
        order = [", ".join(f"{c} {'DESC' if o.descending else 'ASC'}" for c in _COLUMNS[o.key].split(", "))
                 for o in q.orderby]
        # A total order, so that pages neither repeat nor skip a row.
        order.append("sensor ASC, metric ASC, time ASC")
        with self._repo._read() as x:
            rows = x.rows(
                f"SELECT sensor, metric, site, time, value, quality FROM readings WHERE {sql} "
                f"ORDER BY {', '.join(order)} LIMIT %s OFFSET %s",
                (*params, q.limit, q.offset),
            )
        return [_row(r) for r in rows]

    def count(self, q: ObservationQuery) -> int:
        where = self._where(q)
        if where is None:
            return 0
        sql, params = where
        with self._repo._read() as x:
            row = x.one(f"SELECT count(*) FROM readings WHERE {sql}", params)
        return int(row[0]) if row else 0

    def observation(self, sensor: str, metric: str, time: datetime) -> ObservationRow | None:
        with self._repo._read() as x:
            row = x.one(
                "SELECT sensor, metric, site, time, value, quality FROM readings "
                "WHERE sensor = %s AND metric = %s AND time = %s",
                (sensor, metric, self._repo._t(time)),
            )
        return None if row is None else _row(row)


def _row(r: Sequence[object]) -> ObservationRow:
    value = r[4]
    assert isinstance(value, int | float)
    return ObservationRow(str(r[0]), str(r[1]), str(r[2]), utc(r[3]), float(value), str(r[5]))
