"""``SqlDatabase``: what the per-aggregate SQL classes need of a database, whichever it is.

Queries are written once with ``%s`` parameters (the SQLite adapter turns them into ``?``);
what differs by dialect (time values, lists, "latest per series", locking) are small hooks
the adapters (ops_center/adapters/sqlite.py, postgres.py) implement. Identifiers are never
built from input: table names come from fixed mappings in the aggregate modules.
"""

from __future__ import annotations

import base64
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from ops_center.adapters.ports import Sites

Row = tuple[Any, ...]
PREVIEW_BYTES: Final = 512
IN_CHUNK: Final = 500  # ids per IN (...) list: under SQLite's limit on parameters


class Executor(Protocol):
    def rows(self, query: str, params: Sequence[object] = ()) -> list[Row]: ...

    def one(self, query: str, params: Sequence[object] = ()) -> Row | None: ...

    def run(self, query: str, params: Sequence[object] = ()) -> None: ...


def utc(value: object) -> datetime:
    # Called for every time of every row of a list page: the common cases return early.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    elif not isinstance(value, datetime):
        raise TypeError(f"not a time: {value!r}")
    tz = value.tzinfo
    if tz is UTC:
        return value
    return value.astimezone(UTC) if tz else value.replace(tzinfo=UTC)


def utc_or_none(value: object) -> datetime | None:
    return None if value is None else utc(value)


def preview(payload: bytes) -> str:
    """The start of a dead letter's raw bytes: text when it is UTF-8, else base64."""
    head = payload[:PREVIEW_BYTES]
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start >= len(head) - 3 and len(payload) > PREVIEW_BYTES:  # cut inside a character
            return head[: exc.start].decode("utf-8")
        return "base64:" + base64.b64encode(head).decode("ascii")


def page_total(row: Row | None) -> int:
    return int(row[0]) if row else 0


def page_rows(
    x: Executor, cols: str, table: str, where: str, params: Sequence[object], order_by: str, limit: int,
    offset: int,
) -> tuple[list[Row], int]:
    """One page of ``table`` (a constant of the calling module, never input) within ``where``,
    in ``order_by`` order; and how many rows match in all."""
    total = x.one(f"SELECT count(*) FROM {table} WHERE {where}", params)
    rows = x.rows(
        f"SELECT {cols} FROM {table} WHERE {where} ORDER BY {order_by} LIMIT %s OFFSET %s",
        [*params, limit, offset],
    )
    return rows, page_total(total)


class SqlDatabase(ABC):
    """Units of work and the dialect's small differences. The SQL classes of every aggregate
    (``sql_incidents``, ``sql_gateways``, ``sql_users``, ...) and the stores beside them
    (commands, notifications, sessions, TT 10, observations) run on one of these, so they
    share its connections."""

    @abstractmethod
    def _tx(self) -> AbstractContextManager[Executor]:
        """A transaction (committed on success, rolled back on error)."""

    @abstractmethod
    def _read(self) -> AbstractContextManager[Executor]:
        """A read-only unit of work."""

    @abstractmethod
    def _t(self, value: datetime) -> object:
        """A time as a query parameter."""

    @abstractmethod
    def _sites_param(self, sites: Sequence[str]) -> object: ...

    @abstractmethod
    def _sites_value(self, value: object) -> tuple[str, ...]: ...

    _for_update: str = ""
    _greatest: str = "max"
    _payload_len: str = "length(payload)"
    _payload_head: str = f"substr(payload, 1, {PREVIEW_BYTES})"

    def _tn(self, value: datetime | None) -> object:
        return None if value is None else self._t(value)

    @staticmethod
    def _in(column: str, values: Sequence[str]) -> tuple[str, list[object]]:
        return f"{column} IN ({', '.join(['%s'] * len(values))})", list(values)

    def _site_where(self, sites: Sites, column: str = "site") -> tuple[str, list[object]] | None:
        """A WHERE fragment for ``sites``; None when nothing can match (empty filter)."""
        if sites is None:
            return "TRUE", []
        if not sites:
            return None
        return self._in(column, sites)


@dataclass(frozen=True, slots=True)
class Columns:
    """A table's columns, named as the fields of its record and in the order the SQL lists
    them: the one list a SELECT, an INSERT and the row's record are all made from."""

    names: tuple[str, ...]
    times: frozenset[str] = frozenset()  # aware UTC in the record; the dialect's time in the row
    flags: frozenset[str] = frozenset()  # bool in the record (SQLite answers 0 or 1)

    @property
    def sql(self) -> str:
        return ", ".join(self.names)

    @property
    def slots(self) -> str:
        return ", ".join(["%s"] * len(self.names))

    def read(self, row: Row) -> dict[str, Any]:
        """The record's fields by name, from a row selected as :attr:`sql`."""
        out = dict(zip(self.names, row, strict=True))
        for name in self.times:
            out[name] = utc_or_none(out[name])
        for name in self.flags:
            out[name] = bool(out[name])
        return out

    def params(self, db: SqlDatabase, record: object) -> tuple[object, ...]:
        """The INSERT parameters of ``record``, in :attr:`sql`'s order."""
        return tuple(db._tn(getattr(record, n)) if n in self.times else getattr(record, n)
                     for n in self.names)
