"""The TT 10/2021 feed's upload log as the API reads it (table ``tt10_uploads``, migration
0007; written by the feed process, feeds/tt10/uploads.py). On the repository's own
connections (``_read``/``_t`` of :class:`~ops_center.adapters.sql_base.SqlDatabase`), as
commands.py does; a repository that is not SQL has no log (empty answers)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from ops_center.adapters.records import Page
from ops_center.adapters.repository import OpsRepository
from ops_center.adapters.sql_base import Row, SqlDatabase, page_rows, utc, utc_or_none

Tt10State = Literal["pending", "sent", "failed"]
TT10_STATES: tuple[Tt10State, ...] = ("pending", "sent", "failed")

_COLS = "file, station, sensor, cycle, state, attempts, bytes, created_at, last_attempt_at, sent_at, error"


@dataclass(frozen=True, slots=True)
class Tt10Upload:
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
    counts: dict[str, int]
    last_sent_cycle: datetime | None
    oldest_unsent_cycle: datetime | None


def _upload(r: Row) -> Tt10Upload:
    return Tt10Upload(
        file=r[0], station=r[1], sensor=r[2], cycle=utc(r[3]), state=r[4], attempts=int(r[5]),
        bytes=int(r[6]),
        created_at=utc(r[7]), last_attempt_at=utc_or_none(r[8]), sent_at=utc_or_none(r[9]), error=r[10],
    )


class Tt10Log:
    def __init__(self, repo: OpsRepository) -> None:
        self._repo = repo if isinstance(repo, SqlDatabase) else None

    def stations(self, site: str) -> list[Tt10StationSummary]:
        """Per station of ``site``: files per state, newest sent cycle, oldest unsent one."""
        r = self._repo
        if r is None:
            return []
        with r._read() as x:
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
        """The files of ``site``, newest cycle first."""
        r = self._repo
        if r is None:
            return Page([], 0)
        clause, params = "site = %s", [site]
        if state is not None:
            clause += " AND state = %s"
            params.append(state)
        with r._read() as x:
            rows, total = page_rows(
                x, _COLS, "tt10_uploads", clause, params, "cycle DESC, file", limit, offset
            )
        return Page([_upload(row) for row in rows], total)

    def last_error(self, site: str) -> tuple[datetime, str] | None:
        r = self._repo
        if r is None:
            return None
        with r._read() as x:
            row = x.one(
                "SELECT last_attempt_at, error FROM tt10_uploads WHERE site = %s AND state = 'failed' "
                "AND error IS NOT NULL ORDER BY last_attempt_at DESC LIMIT 1",
                (site,),
            )
        return None if row is None else (utc(row[0]), str(row[1]))
