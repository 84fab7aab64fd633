"""Maintenance windows: per sensor, gateway or site, with who set them and why.

While a window covers a sensor (directly, through its gateway or its site) its readings
are not evaluated by value rules, its freshness is paused, and the incident manager does
not open incidents from its alerts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

Scope = Literal["sensor", "gateway", "site"]


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    """A window as the engine and the incident manager read it; the adapters' row
    (``MaintenanceWindowRecord``, table ``maintenance_windows``) extends it with its site."""

    id: str
    scope: Scope
    target: str          # the sensor, gateway or site id
    starts_at: datetime
    set_by: str
    reason: str
    ends_at: datetime | None = None  # None: until removed

    def covers(self, site: str, gateway: str | None, sensor: str | None, at_s: float) -> bool:
        end = self.ends_at
        if at_s < self.starts_at.timestamp() or (end is not None and at_s >= end.timestamp()):
            return False
        if self.scope == "site":
            return self.target == site
        if self.scope == "gateway":
            return self.target == gateway
        return sensor is not None and self.target == sensor


class MaintenanceCalendar:
    """The windows in force; shared by the rule engine and the incident manager."""

    def __init__(self, windows: tuple[MaintenanceWindow, ...] = ()) -> None:
        self._windows: dict[str, MaintenanceWindow] = {w.id: w for w in windows}

    @property
    def empty(self) -> bool:
        return not self._windows

    def add(self, window: MaintenanceWindow) -> None:
        self._windows[window.id] = window

    def remove(self, window_id: str) -> MaintenanceWindow | None:
        return self._windows.pop(window_id, None)

    def windows(self) -> tuple[MaintenanceWindow, ...]:
        return tuple(self._windows.values())

    def covering(self, site: str, gateway: str | None, sensor: str | None,
                 at_s: float) -> MaintenanceWindow | None:
        for w in self._windows.values():
            if w.covers(site, gateway, sensor, at_s):
                return w
        return None
