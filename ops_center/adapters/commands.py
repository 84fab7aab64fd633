"""Operator commands in the store (table ``commands``, migration 0004): what was sent to which
device, by whom, and what the edge answered.

``CommandStore`` is the port; ``SqlCommandStore`` (ops_center/adapters/sql_commands.py) runs
on the repository's own connections (SQLite or PostgreSQL, through the ``_tx``/``_read``/``_t``
hooks of :class:`~ops_center.adapters.sql_base.SqlDatabase`), so commands share its pool and
its error translation without widening the repository's interface; ``MemoryCommandStore`` is the
fake for unit tests.

State: ``pending`` until the edge answers (``applied`` when ``ok``, ``expired`` when it
refused an expired command, else ``failed``). A pending command past its ``expires_at`` is
*shown* as ``expired`` (the edge would refuse it now) without a write; a late answer still
wins, since the edge judged expiry when the command reached it. Only the first answer of
the gateway the command went to counts: QoS 1 redelivers, and another gateway never answers
for it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal, Protocol

from ops_center.adapters.records import Page
from ops_center.adapters.repository import Conflict, Sites

CommandState = Literal["pending", "applied", "failed", "expired"]
COMMAND_STATES: tuple[CommandState, ...] = ("pending", "applied", "failed", "expired")

_COLS = "id, site, gateway, sensor, name, args, state, created_by, created_at, expires_at, result_at, detail"


@dataclass(frozen=True, slots=True)
class CommandRecord:
    id: str
    site: str
    gateway: str
    sensor: str
    name: str
    args: dict[str, Any]
    state: CommandState
    created_by: str
    created_at: datetime
    expires_at: datetime
    result_at: datetime | None = None
    detail: str | None = None

    def as_seen(self, now: datetime) -> CommandRecord:
        """The state a person should see at ``now``: pending past its expiry is expired."""
        if self.state == "pending" and self.expires_at <= now:
            return replace(self, state="expired")
        return self


def result_state(ok: bool, detail: str) -> CommandState:
    if ok:
        return "applied"
    return "expired" if detail == "expired" else "failed"


class CommandStore(Protocol):
    def add(self, command: CommandRecord) -> None:
        """Record a new command; ``Conflict`` when the id exists."""
        ...

    def get(self, command_id: str, now: datetime) -> CommandRecord | None: ...

    def list(self, sites: Sites, state: CommandState | None, now: datetime, limit: int,
             offset: int) -> Page[CommandRecord]:
        """Newest first, within ``sites`` (None: all), in the state seen at ``now``."""
        ...

    def record_result(self, command_id: str, gateway: str, ok: bool, detail: str,
                      at: datetime) -> CommandRecord | None:
        """Apply the edge's answer; the updated command, or None when it changed nothing
        (unknown id, another gateway, already answered)."""
        ...


def _matches(c: CommandRecord, sites: Sites, state: CommandState | None, now: datetime) -> bool:
    return (sites is None or c.site in sites) and (state is None or c.as_seen(now).state == state)


class MemoryCommandStore:
    def __init__(self) -> None:
        self._rows: dict[str, CommandRecord] = {}
        self._lock = threading.Lock()

    def add(self, command: CommandRecord) -> None:
        with self._lock:
            if command.id in self._rows:
                raise Conflict(f"command {command.id} exists")
            self._rows[command.id] = command

    def get(self, command_id: str, now: datetime) -> CommandRecord | None:
        c = self._rows.get(command_id)
        return None if c is None else c.as_seen(now)

    def list(self, sites: Sites, state: CommandState | None, now: datetime, limit: int,
             offset: int) -> Page[CommandRecord]:
        with self._lock:
            found = [c for c in self._rows.values() if _matches(c, sites, state, now)]
        found.sort(key=lambda c: (-c.created_at.timestamp(), c.id))
        return Page([c.as_seen(now) for c in found[offset:offset + limit]], len(found))

    def record_result(self, command_id: str, gateway: str, ok: bool, detail: str,
                      at: datetime) -> CommandRecord | None:
        with self._lock:
            c = self._rows.get(command_id)
            if c is None or c.gateway != gateway or c.state != "pending":
                return None
            c = replace(c, state=result_state(ok, detail), result_at=at, detail=detail)
            self._rows[command_id] = c
            return c
