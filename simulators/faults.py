"""Fault injection: data faults of sensors, lost signal of gateways, malformed payloads.

Faults are data (frozen dataclasses) placed in a scenario's ``events``, like the physical
events of :mod:`simulators.events`. The difference: a physical event changes the world
(rain raises the water, a leak raises %LEL, and the rules should alert); a fault changes
what the instrument or the link reports about an unchanged world (and the platform should
flag data quality, never raise a pollution or flood alert).

* :class:`StuckValue`, :class:`Spike`, :class:`Drift`: the value is wrong, quality stays
  ``good`` (the device does not know), so the ops center's data-quality rules must catch it.
* :class:`Dropout`: the sensor stops reporting.
* :class:`QualityFlag`: the device marks its own readings (``calibrating``, ``maintenance``).
* :class:`ClockSkew`: a gateway's clock is off; readings carry the wrong ``ts``.
* :class:`LinkOutage`: gateways lose signal (readings are still produced and stamped; the
  edge keeps them in its outbox, docs/design.md data flow).
* :func:`malformed_payloads`: raw MQTT payloads the ingest must dead-letter, each with the
  reason code of docs/contract.md it must be filed under (defined in :mod:`simulators.malformed`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from contract.models import Quality
from simulators.malformed import MalformedPayload, malformed_payloads
from simulators.timebase import epoch, require_aware

__all__ = [
    "ClockSkew",
    "DataFault",
    "Drift",
    "Dropout",
    "FaultLayer",
    "LinkOutage",
    "MalformedPayload",
    "QualityFlag",
    "SensorFault",
    "Spike",
    "StuckValue",
    "malformed_payloads",
]


def _check_window(start: datetime, end: datetime | None) -> None:
    require_aware(start, "start")
    if end is not None and require_aware(end, "end") <= start:
        raise ValueError(f"end {end.isoformat()} must be after start {start.isoformat()}")


def _covers(start: float, end: float, t: float) -> bool:
    return start <= t < end


def _bounds(start: datetime, end: datetime | None) -> tuple[float, float]:
    return epoch(start), (math.inf if end is None else epoch(end))


@dataclass(frozen=True)
class StuckValue:
    """From ``start`` the sensor repeats its last reading before ``start`` (all metrics, or
    ``metrics``): the instrument hung between two readings, so the first reading at or after
    ``start`` is already wrong, and ``start`` is the ground-truth onset of the fault. (A
    simulation that begins inside the window holds its first reading.)"""

    sensor: str
    start: datetime
    end: datetime | None = None
    metrics: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        _check_window(self.start, self.end)


@dataclass(frozen=True)
class Spike:
    """One reading of ``metric``, the first at or after ``at``, replaced by ``value``.

    ``value=None`` means twice the catalog's physical maximum: an impossible value, the
    "out of bounds" case of the data-quality rules (contract/catalog.py).
    """

    sensor: str
    metric: str
    at: datetime
    value: float | None = None
    quality: Quality = "good"

    def __post_init__(self) -> None:
        require_aware(self.at, "at")


@dataclass(frozen=True)
class Drift:
    """``metric`` drifts by ``per_hour`` units per hour from ``start`` (calibration loss)."""

    sensor: str
    metric: str
    start: datetime
    per_hour: float
    end: datetime | None = None

    def __post_init__(self) -> None:
        _check_window(self.start, self.end)


@dataclass(frozen=True)
class Dropout:
    """The sensor sends nothing between ``start`` and ``end`` (dead battery, cut cable)."""

    sensor: str
    start: datetime
    end: datetime | None = None

    def __post_init__(self) -> None:
        _check_window(self.start, self.end)


@dataclass(frozen=True)
class QualityFlag:
    """The device flags its own readings, e.g. ``calibrating`` during a zero/span check."""

    sensor: str
    start: datetime
    end: datetime | None = None
    quality: Quality = "calibrating"

    def __post_init__(self) -> None:
        _check_window(self.start, self.end)


@dataclass(frozen=True)
class ClockSkew:
    """Readings of ``gateway`` are stamped ``offset_s`` seconds off (RTC drift, bad NTP).

    The only fault that breaks the ``advance()`` window: a skewed reading's ``ts`` is what
    the gateway's clock says, so it may lie outside the window or in the future.
    """

    gateway: str
    start: datetime
    offset_s: float
    end: datetime | None = None

    def __post_init__(self) -> None:
        _check_window(self.start, self.end)


@dataclass(frozen=True)
class LinkOutage:
    """``gateways`` have no signal between ``start`` and ``end`` (docs/design.md: unstable telecom)."""

    gateways: frozenset[str]
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        _check_window(self.start, self.end)

    def covers(self, gateway: str, t: datetime) -> bool:
        return gateway in self.gateways and self.start <= t < self.end


SensorFault = StuckValue | Spike | Drift | Dropout | QualityFlag
DataFault = SensorFault | ClockSkew


class FaultLayer:
    """Applies the data faults of one sensor to its clean readings, step by step.

    Stateful only for :class:`StuckValue` (the last reading and the value held), kept here
    so that splitting a run into several ``advance()`` calls gives the same readings as one
    call.
    """

    def __init__(self, sensor: str, interval_s: int, faults: Iterable[SensorFault]) -> None:
        self.sensor = sensor
        self._interval_s = interval_s
        self._dropouts: list[tuple[float, float]] = []
        self._stuck: list[tuple[float, float, frozenset[str], dict[str, float]]] = []
        self._drifts: list[tuple[float, float, str, float]] = []
        self._spikes: list[tuple[float, str, float | None, Quality]] = []
        self._flags: list[tuple[float, float, Quality]] = []
        self._last: dict[str, float] = {}  # the last reading reported, for a value to hold
        for f in faults:
            if isinstance(f, Dropout):
                self._dropouts.append(_bounds(f.start, f.end))
            elif isinstance(f, StuckValue):
                self._stuck.append((*_bounds(f.start, f.end), f.metrics, {}))
            elif isinstance(f, Drift):
                self._drifts.append((*_bounds(f.start, f.end), f.metric, f.per_hour))
            elif isinstance(f, Spike):
                self._spikes.append((epoch(f.at), f.metric, f.value, f.quality))
            elif isinstance(f, QualityFlag):
                self._flags.append((*_bounds(f.start, f.end), f.quality))

    def apply(self, t: float, values: dict[str, float], maxima: dict[str, float]) -> tuple[Quality, bool]:
        """Rewrite ``values`` in place for time ``t``; return (quality, dropped)."""
        if any(_covers(s, e, t) for s, e in self._dropouts):
            return "good", True
        last = self._last
        for s, e, metrics, held in self._stuck:
            if _covers(s, e, t):
                for m, value in values.items():
                    if not metrics or m in metrics:
                        values[m] = held.setdefault(m, last.get(m, value))
        for s, e, m, per_hour in self._drifts:
            if m in values and _covers(s, e, t):
                values[m] += per_hour * (t - s) / 3600.0
        quality: Quality = "good"
        for at, m, spike, q in self._spikes:
            # The first reading on the sensor's grid at or after ``at``.
            if m in values and at <= t < at + self._interval_s:
                values[m] = 2.0 * maxima[m] if spike is None else spike
                quality = q
        for s, e, q in self._flags:
            if _covers(s, e, t):
                quality = q
        if self._stuck:
            last.update(values)
        return quality, False

