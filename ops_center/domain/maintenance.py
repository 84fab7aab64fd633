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
    id: str
    scope: Scope
    target: str          # the sensor, gateway or site id
    start: datetime
    end: datetime | None  # None: until removed
    set_by: str
    reason: str

    def covers(self, site: str, gateway: str | None, sensor: str | None, at_s: float) -> bool:
        if at_s < self.start.timestamp() or (self.end is not None and at_s >= self.end.timestamp()):
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
