"""``SqlGatewayRepository``: gateway status (table ``gateway_status``, written by the ops
service) and what the ingest recorded per gateway (``ingest_batches``, ``gateway_drops``,
``dead_letters``, read through SQL only)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final

from ops_center.adapters.ports import Sites
from ops_center.adapters.records import DeadLetterRecord, GatewayBatchStats, GatewayStatusRecord, Page
from ops_center.adapters.sql_base import Executor, Row, SqlDatabase, page_rows, preview, utc, utc_or_none

GATEWAY_COLS: Final = (
    "gateway, site, state, last_seen, outbox_batches, outbox_oldest, dropped_batches, last_seq, agent"
)


def gateway_status(r: Row) -> GatewayStatusRecord:
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


def write_gateway_status(db: SqlDatabase, x: Executor, s: GatewayStatusRecord) -> None:
    x.run(
        f"INSERT INTO gateway_status ({GATEWAY_COLS}, updated_at) "
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
            db._t(s.last_seen),
            s.outbox_batches,
            db._tn(s.outbox_oldest),
            s.dropped_batches,
            s.last_seq,
            s.agent,
            db._t(datetime.now(UTC)),
        ),
    )


class SqlGatewayRepository:
    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    def upsert_gateway_status(self, status: GatewayStatusRecord) -> None:
        with self._db._tx() as x:
            write_gateway_status(self._db, x, status)

    def list_gateway_status(self, sites: Sites) -> list[GatewayStatusRecord]:
        where = self._db._site_where(sites)
        if where is None:
            return []
        clause, params = where
        with self._db._read() as x:
            rows = x.rows(
                f"SELECT {GATEWAY_COLS} FROM gateway_status WHERE {clause} ORDER BY gateway", params
            )
        return [gateway_status(r) for r in rows]

    def batch_stats(self, gateways: Sequence[str], since: datetime) -> list[GatewayBatchStats]:
        if not gateways:
            return []
        db = self._db
        clause, params = db._in("gateway", gateways)
        with db._read() as x:
            rows = x.rows(
                "SELECT gateway, count(*), count(*) FILTER (WHERE outcome = 'stored'), min(seq), max(seq), "
                f"max(received_at) FROM ingest_batches WHERE {clause} AND received_at >= %s "
                "GROUP BY gateway",
                [*params, db._t(since)],
            )
            drops: dict[str, int | None] = dict(
                x.rows(
                    f"SELECT gateway, max(through_seq) FROM gateway_drops WHERE {clause} "
                    "AND declared_at >= %s GROUP BY gateway",
                    [*params, db._t(since)],
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

    def dead_letters(self, sites: Sites, limit: int, offset: int) -> Page[DeadLetterRecord]:
        db = self._db
        where = db._site_where(sites)
        if where is None:
            return Page([], 0)
        clause, params = where
        with db._read() as x:
            cols = (
                f"id, received_at, topic, gateway, site, seq, reason, detail, {db._payload_len}, "
                f"{db._payload_head}"
            )
            rows, total = page_rows(
                x, cols, "dead_letters", clause, params, "received_at DESC, id DESC", limit, offset
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
        return Page(items, total)

    def dead_letter_counts(self, sites: Sites, since: datetime) -> dict[str, int]:
        where = self._db._site_where(sites)
        if where is None:
            return {}
        clause, params = where
        with self._db._read() as x:
            rows = x.rows(
                f"SELECT site, count(*) FROM dead_letters WHERE {clause} AND site IS NOT NULL "
                "AND received_at >= %s GROUP BY site",
                [*params, self._db._t(since)],
            )
        return {str(site): int(n) for site, n in rows}
