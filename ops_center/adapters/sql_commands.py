"""``SqlCommandStore``: operator commands (table ``commands``, migration 0004) on the ops
store's own connections (SQLite or PostgreSQL), so commands share its pool and its error
translation. The port, the states and the fake: ops_center/adapters/commands.py."""

from __future__ import annotations

import json
from datetime import datetime

from ops_center.adapters.commands import CommandRecord, CommandState, result_state
from ops_center.adapters.ports import Sites
from ops_center.adapters.records import Page
from ops_center.adapters.sql_base import Row, SqlDatabase, page_rows, utc, utc_or_none

_COLS = "id, site, gateway, sensor, name, args, state, created_by, created_at, expires_at, result_at, detail"


class SqlCommandStore:
    def __init__(self, repo: SqlDatabase) -> None:
        self._repo = repo

    def add(self, command: CommandRecord) -> None:
        c, r = command, self._repo
        with r._tx() as x:
            x.run(
                f"INSERT INTO commands ({_COLS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (c.id, c.site, c.gateway, c.sensor, c.name, json.dumps(c.args, ensure_ascii=False), c.state,
                 c.created_by, r._t(c.created_at), r._t(c.expires_at), r._tn(c.result_at), c.detail),
            )

    def get(self, command_id: str, now: datetime) -> CommandRecord | None:
        with self._repo._read() as x:
            row = x.one(f"SELECT {_COLS} FROM commands WHERE id = %s", (command_id,))
        return None if row is None else _record(row).as_seen(now)

    def list(self, sites: Sites, state: CommandState | None, now: datetime, limit: int,
             offset: int) -> Page[CommandRecord]:
        r = self._repo
        where = r._site_where(sites)
        if where is None:
            return Page([], 0)
        clause, params = where
        t = r._t(now)
        if state == "pending":
            clause += " AND state = 'pending' AND expires_at > %s"
            params.append(t)
        elif state == "expired":
            clause += " AND (state = 'expired' OR (state = 'pending' AND expires_at <= %s))"
            params.append(t)
        elif state is not None:
            clause += " AND state = %s"
            params.append(state)
        with r._read() as x:
            rows, total = page_rows(
                x, _COLS, "commands", clause, params, "created_at DESC, id", limit, offset
            )
        return Page([_record(row).as_seen(now) for row in rows], total)

    def record_result(self, command_id: str, gateway: str, ok: bool, detail: str,
                      at: datetime) -> CommandRecord | None:
        r = self._repo
        with r._tx() as x:
            row = x.one(
                f"UPDATE commands SET state = %s, result_at = %s, detail = %s "
                f"WHERE id = %s AND gateway = %s AND state = 'pending' RETURNING {_COLS}",
                (result_state(ok, detail), r._t(at), detail, command_id, gateway),
            )
        return None if row is None else _record(row)


def _record(r: Row) -> CommandRecord:
    args = json.loads(r[5]) if isinstance(r[5], str) else r[5]
    return CommandRecord(
        id=r[0], site=r[1], gateway=r[2], sensor=r[3], name=r[4], args=dict(args), state=r[6],
        created_by=r[7], created_at=utc(r[8]), expires_at=utc(r[9]), result_at=utc_or_none(r[10]),
        detail=r[11],
    )
