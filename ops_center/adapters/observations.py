"""Readings as SensorThings Observations: filtered, ordered, paged and counted in the store.

``ObservationStore`` is the port; ``SqlObservationStore`` (ops_center/adapters/
sql_observations.py) runs on the repository's own connections (SQLite or
PostgreSQL/TimescaleDB, through the ``_read``/``_t`` hooks of
:class:`~ops_center.adapters.sql_base.SqlDatabase`, as ``SqlCommandStore`` does), so it shares
the pool and error translation without widening the repository's interface.

Every query is built from fixed fragments: column names come from fixed mappings (SQL side), values
are parameters. The scope is part of every query (``site IN (...)`` or one series).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

Op = Literal["eq", "ne", "gt", "ge", "lt", "le"]


@dataclass(frozen=True, slots=True)
class Condition:
    """``field op value``: field ``time`` with a datetime, or ``result`` with a float."""

    field: Literal["time", "result"]
    op: Op
    value: datetime | float


@dataclass(frozen=True, slots=True)
class Order:
    key: str  # time | result | id | name
    descending: bool = False


@dataclass(frozen=True, slots=True)
class ObservationRow:
    sensor: str
    metric: str
    site: str
    time: datetime
    value: float
    quality: str


@dataclass(frozen=True, slots=True)
class ObservationQuery:
    """``sites`` None: every site; ``series``: one (sensor, metric)."""

    sites: tuple[str, ...] | None
    series: tuple[str, str] | None
    conditions: tuple[Condition, ...]
    orderby: tuple[Order, ...]
    limit: int
    offset: int


class ObservationStore(Protocol):
    def observations(self, q: ObservationQuery) -> list[ObservationRow]: ...

    def count(self, q: ObservationQuery) -> int: ...

    def observation(self, sensor: str, metric: str, time: datetime) -> ObservationRow | None: ...
