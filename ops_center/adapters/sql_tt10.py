"""``SqlTt10Reader``: the TT 10/2021 feed's upload log as the API reads it (table
``tt10_uploads``, migration 0007; written by the feed process, feeds/tt10/uploads.py). The
port and its values: ``Tt10Reader`` in ops_center/adapters/ports.py."""

from __future__ import annotations

from datetime import datetime
from typing import Final

from ops_center.adapters.ports import TT10_STATES, Tt10State, Tt10StationSummary, Tt10Upload
from ops_center.adapters.records import Page
from ops_center.adapters.sql_base import Row, SqlDatabase, page_rows, utc, utc_or_none

_COLS: Final = (
    "file, station, sensor, cycle, state, attempts, bytes, created_at, last_attempt_at, sent_at, error"
)


def _upload(r: Row) -> Tt10Upload:
    return Tt10Upload(
        file=r[0], station=r[1], sensor=r[2], cycle=utc(r[3]), state=r[4], attempts=int(r[5]),
        bytes=int(r[6]),
        created_at=utc(r[7]), last_attempt_at=utc_or_none(r[8]), sent_at=utc_or_none(r[9]), error=r[10],
    )


class SqlTt10Reader:
    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    def stations(self, site: str) -> list[Tt10StationSummary]:
        with self._db._read() as x:
            rows = x.rows(
                "SELECT station, sensor, state, count(*), max(cycle), min(cycle) FROM tt10_uploads "
                "WHERE site = %s GROUP BY station, sensor, state ORDER BY station, state",
                (site,),
            )
        out: dict[str, Tt10StationSummary] = {}
        for station, sensor, state, count, newest, oldest in rows:
            s = out.setdefault(station, Tt10StationSummary(station, sensor, dict.fromkeys(TT10_STATES, 0),
                                                           None, None))
            s.counts[state] = int(count)
            if state == "sent":
                s.last_sent_cycle = utc(newest)
            elif s.oldest_unsent_cycle is None or utc(oldest) < s.oldest_unsent_cycle:
                s.oldest_unsent_cycle = utc(oldest)
        return list(out.values())

    def uploads(self, site: str, state: Tt10State | None, limit: int, offset: int) -> Page[Tt10Upload]:
        clause, params = "site = %s", [site]
        if state is not None:
            clause += " AND state = %s"
            params.append(state)
        with self._db._read() as x:
            rows, total = page_rows(
                x, _COLS, "tt10_uploads", clause, params, "cycle DESC, file", limit, offset
            )
        return Page([_upload(row) for row in rows], total)

    def last_error(self, site: str) -> tuple[datetime, str] | None:
        with self._db._read() as x:
            row = x.one(
                "SELECT last_attempt_at, error FROM tt10_uploads WHERE site = %s AND state = 'failed' "
                "AND error IS NOT NULL ORDER BY last_attempt_at DESC LIMIT 1",
                (site,),
            )
        return None if row is None else (utc(row[0]), str(row[1]))
