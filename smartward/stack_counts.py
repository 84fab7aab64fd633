"""What a one-process stack (smartward/stack.py) reports: its counters, and the counts it
reads from the shared store."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ops_center.service.service import ServiceProgress


@dataclass(frozen=True, slots=True)
class StackCounters:
    sim_time: datetime
    readings_stored: dict[str, int]  # per site
    dead_letters: int
    outbox_depth: dict[str, int]  # per gateway: batches not yet covered by the ack watermark
    open_incidents: int  # stored, not resolved
    ops: ServiceProgress | None  # None while the ops service is down
    clock_held_s: float

    def lines(self) -> list[str]:
        stored = ", ".join(f"{s} {n}" for s, n in sorted(self.readings_stored.items()))
        depth = ", ".join(f"{g} {n}" for g, n in sorted(self.outbox_depth.items()) if n)
        return [
            f"thời gian mô phỏng / simulated time: {self.sim_time:%Y-%m-%d %H:%M:%S} UTC",
            f"số đo đã lưu / readings stored: {stored or 0}",
            f"thư chết / dead letters: {self.dead_letters}",
            f"hàng đợi biên / outbox depth: {depth or 0}",
            f"sự cố đang mở / open incidents: {self.open_incidents}",
        ]


class StoreCounts:
    """Read-only counts from the shared store (its own connection; SQL only, as the
    components share the store, never code)."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url

    def _rows(self, query: str) -> list[tuple[Any, ...]]:
        if self.db_url.startswith("sqlite:///"):
            path = self.db_url[len("sqlite:///"):]
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
            try:
                return list(conn.execute(query).fetchall())
            finally:
                conn.close()
        import psycopg

        with psycopg.connect(self.db_url, connect_timeout=5) as pg:
            return list(pg.execute(query.encode()).fetchall())

    def readings_by_site(self) -> dict[str, int]:
        return {str(s): int(n) for s, n in self._rows("SELECT site, count(*) FROM readings GROUP BY site")}

    def dead_letters(self) -> int:
        rows = self._rows("SELECT count(*) FROM dead_letters")
        return int(rows[0][0]) if rows else 0
