"""``SqlReadingsReader``: the ingest's readings and rollups (``readings``, ``readings_1m``,
``readings_1h``), read only. PostgreSQL answers ``latest_values`` in one round trip
(ops_center/adapters/postgres.py, ``PostgresReadingsReader``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final

from ops_center.adapters.ports import Resolution
from ops_center.adapters.records import LatestValue, RawPoint, RollupPoint
from ops_center.adapters.sql_base import SqlDatabase, utc

_ROLLUP_TABLES: Final = {"1m": "readings_1m", "1h": "readings_1h"}


class SqlReadingsReader:
    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    def latest_values(self, pairs: Sequence[tuple[str, str]], since: datetime) -> list[LatestValue]:
        out: list[LatestValue] = []
        with self._db._read() as x:
            for sensor, metric in pairs:
                row = x.one(
                    "SELECT time, value, quality FROM readings WHERE sensor = %s AND metric = %s "
                    "AND time >= %s ORDER BY time DESC LIMIT 1",
                    (sensor, metric, self._db._t(since)),
                )
                if row is not None:
                    out.append(LatestValue(sensor, metric, utc(row[0]), float(row[1]), str(row[2])))
        return out

    def raw_readings(
        self, sensor: str, metric: str, start: datetime, end: datetime, limit: int
    ) -> list[RawPoint]:
        db = self._db
        with db._read() as x:
            rows = x.rows(
                "SELECT time, value, quality FROM readings WHERE sensor = %s AND metric = %s "
                "AND time >= %s AND time < %s ORDER BY time LIMIT %s",
                (sensor, metric, db._t(start), db._t(end), limit),
            )
        return [RawPoint(utc(r[0]), float(r[1]), str(r[2])) for r in rows]

    def rollup_readings(
        self, resolution: Resolution, sensor: str, metric: str, start: datetime, end: datetime
    ) -> list[RollupPoint]:
        table = _ROLLUP_TABLES[resolution]
        db = self._db
        with db._read() as x:
            rows = x.rows(
                f"SELECT bucket, min, max, count, sum FROM {table} WHERE sensor = %s AND metric = %s "
                "AND bucket >= %s AND bucket < %s ORDER BY bucket",
                (sensor, metric, db._t(start), db._t(end)),
            )
        return [RollupPoint(utc(r[0]), float(r[1]), float(r[2]), int(r[3]), float(r[4])) for r in rows]

    def hourly_means(
        self, sensors: Sequence[str], metrics: Sequence[str], since: datetime
    ) -> dict[tuple[str, str], list[tuple[datetime, float]]]:
        if not sensors or not metrics:
            return {}
        db = self._db
        s_clause, s_params = db._in("sensor", sensors)
        m_clause, m_params = db._in("metric", metrics)
        with db._read() as x:
            rows = x.rows(
                f"SELECT sensor, metric, bucket, avg FROM readings_1h WHERE {s_clause} AND {m_clause} "
                "AND bucket >= %s ORDER BY bucket",
                [*s_params, *m_params, db._t(since)],
            )
        out: dict[tuple[str, str], list[tuple[datetime, float]]] = {}
        for sensor, metric, bucket, avg in rows:
            out.setdefault((sensor, metric), []).append((utc(bucket), float(avg)))
        return out
