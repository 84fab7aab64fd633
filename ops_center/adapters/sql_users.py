"""``SqlUserRepository``: users (table ``users``) and the audit log (``audit_log``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from ops_center.adapters.errors import Conflict, UnknownUser, UserExists
from ops_center.adapters.records import AuditEntry, Page, UserRecord
from ops_center.adapters.sql_base import Executor, Row, SqlDatabase, page_rows, utc, utc_or_none

USER_COLS: Final = "name, password_hash, role, sites, disabled, token_version, created_at, updated_at"


def write_audit(db: SqlDatabase, x: Executor, e: AuditEntry) -> int:
    row = x.one(
        "INSERT INTO audit_log (at, actor, action, target, site, ip, outcome, detail) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (db._t(e.at), e.actor, e.action, e.target, e.site, e.ip, e.outcome, e.detail),
    )
    assert row is not None
    return int(row[0])


class SqlUserRepository:
    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    def _user(self, r: Row) -> UserRecord:
        return UserRecord(
            name=r[0],
            password_hash=r[1],
            role=r[2],
            sites=self._db._sites_value(r[3]),
            disabled=bool(r[4]),
            token_version=int(r[5]),
            created_at=utc_or_none(r[6]),
            updated_at=utc_or_none(r[7]),
        )

    def get_user(self, name: str) -> UserRecord | None:
        with self._db._read() as x:
            row = x.one(f"SELECT {USER_COLS} FROM users WHERE name = %s", (name,))
        return None if row is None else self._user(row)

    def list_users(self) -> list[UserRecord]:
        with self._db._read() as x:
            rows = x.rows(f"SELECT {USER_COLS} FROM users ORDER BY name")
        return [self._user(r) for r in rows]

    def add_user(self, user: UserRecord) -> None:
        db, u = self._db, user
        now = db._t(u.created_at or datetime.now(UTC))
        try:
            with db._tx() as x:
                x.run(
                    f"INSERT INTO users ({USER_COLS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    (u.name, u.password_hash, u.role, db._sites_param(u.sites), u.disabled, u.token_version,
                     now, now),
                )
        except Conflict as exc:
            raise UserExists(user.name) from exc

    def update_user(
        self, name: str, *, password_hash: str | None = None, disabled: bool | None = None, at: datetime
    ) -> UserRecord:
        db = self._db
        with db._tx() as x:
            row = x.one(f"SELECT {USER_COLS} FROM users WHERE name = %s{db._for_update}", (name,))
            if row is None:
                raise UnknownUser(name)
            current = self._user(row)
            new_hash = password_hash if password_hash is not None else current.password_hash
            new_disabled = disabled if disabled is not None else current.disabled
            x.run(
                "UPDATE users SET password_hash = %s, disabled = %s, token_version = token_version + 1, "
                "updated_at = %s WHERE name = %s",
                (new_hash, new_disabled, db._t(at), name),
            )
            updated = x.one(f"SELECT {USER_COLS} FROM users WHERE name = %s", (name,))
        assert updated is not None
        return self._user(updated)

    def append_audit(self, entry: AuditEntry) -> int:
        with self._db._tx() as x:
            return write_audit(self._db, x, entry)

    def audit_entries(self, limit: int, offset: int) -> Page[AuditEntry]:
        with self._db._read() as x:
            rows, total = page_rows(
                x, "id, at, actor, action, target, site, ip, outcome, detail", "audit_log", "TRUE", (),
                "id DESC", limit, offset,
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
        return Page(items, total)
