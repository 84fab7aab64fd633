"""Physical events of a scenario, as data: what happens in the world, with when and where.

The models read these (rain drives water, a leak drives %LEL ...); faults of the
instruments and links are in :mod:`simulators.faults`. ``Event`` is the union of both,
the type of ``Scenario.events``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Literal

from simulators.faults import ClockSkew, Drift, Dropout, LinkOutage, QualityFlag, Spike, StuckValue
from simulators.timebase import HOUR_S, epoch, require_aware


class _Window:
    """``start``/``end`` as epoch seconds, computed once (the models ask every step)."""

    start: datetime
    end: datetime

    @cached_property
    def span(self) -> tuple[float, float]:
        return epoch(self.start), epoch(self.end)


def _check(start: datetime, end: datetime) -> None:
    if require_aware(end, "end") <= require_aware(start, "start"):
        raise ValueError(f"end {end.isoformat()} must be after start {start.isoformat()}")


@dataclass(frozen=True)
class RainEvent(_Window):
    """A rain event over ``site``: ``total_mm`` between ``start`` and ``end``.

    The intensity follows a Beta(2, 1/peak_at) profile: a quick rise to the peak at
    ``peak_at`` of the duration and a long tail, the shape of a convective cell. docs/domain-facts.md
    §3.1: 50–100 mm in 1–3 h is what floods Delta streets; >30–50 mm/h is torrential.
    """

    site: str
    start: datetime
    end: datetime
    total_mm: float
    peak_at: float = 0.25

    def __post_init__(self) -> None:
        _check(self.start, self.end)
        if not 0.05 <= self.peak_at <= 0.5 or self.total_mm < 0:
            raise ValueError("peak_at must be in [0.05, 0.5] and total_mm >= 0")

    def rate_mm_h(self, t: float) -> float:
        s, e = self.span
        if not s < t < e:
            return 0.0
        x = (t - s) / (e - s)
        a, b = 2.0, 1.0 / self.peak_at
        norm = math.gamma(a + b) / (math.gamma(a) * math.gamma(b))
        shape: float = x ** (a - 1.0) * (1.0 - x) ** (b - 1.0)
        return self.total_mm / ((e - s) / HOUR_S) * norm * shape


@dataclass(frozen=True)
class AirEpisode(_Window):
    """Sets the PM2.5 daily mean of ``sites`` (µg/m³) between ``start`` and ``end``.

    Used both ways: a calm baseline that keeps a scenario free of air-quality incidents,
    and a pollution episode (docs/domain-facts.md §4.1: winter episodes of 120–180 µg/m³).
    """

    sites: frozenset[str]
    start: datetime
    end: datetime
    pm25_daily_mean: float

    def __post_init__(self) -> None:
        _check(self.start, self.end)


@dataclass(frozen=True)
class NoiseEvent(_Window):
    """Adds ``add_db`` to the LAeq of ``sensors`` (night construction, a festival, a fair)."""

    sensors: frozenset[str]
    start: datetime
    end: datetime
    add_db: float

    def __post_init__(self) -> None:
        _check(self.start, self.end)


@dataclass(frozen=True)
class GasLeak(_Window):
    """A combustible-gas leak: each detector in ``peaks`` rises towards its own %LEL peak.

    ``peaks`` pairs a sensor with the %LEL it settles at (closer detectors see more).
    The concentration approaches the peak with time constant ``rise_s`` and decays with
    ``fall_s`` once the leak is isolated at ``end``.
    """

    peaks: tuple[tuple[str, float], ...]
    start: datetime
    end: datetime
    rise_s: float = 300.0
    fall_s: float = 600.0

    def __post_init__(self) -> None:
        _check(self.start, self.end)

    def lel(self, sensor: str, t: float) -> float:
        peak = self.peak_of.get(sensor, 0.0)
        return peak * _rise_fall(t, *self.span, self.rise_s, self.fall_s)

    @cached_property
    def peak_of(self) -> dict[str, float]:
        return dict(self.peaks)


@dataclass(frozen=True)
class Fire(_Window):
    """A fire seen by the detectors in ``severity`` (sensor → 0..1, how close it is).

    Temperature climbs towards ``peak_temp_c`` (fixed-temperature heat detectors alarm at
    57–68 °C) and smoke towards ``peak_smoke_pct``; both decay after suppression at ``end``.
    """

    severity: tuple[tuple[str, float], ...]
    start: datetime
    end: datetime
    peak_temp_c: float = 95.0
    peak_smoke_pct: float = 20.0
    rise_s: float = 240.0
    fall_s: float = 900.0

    def __post_init__(self) -> None:
        _check(self.start, self.end)

    def level(self, sensor: str, t: float) -> float:
        sev = self.severity_of.get(sensor, 0.0)
        return sev * _rise_fall(t, *self.span, self.rise_s, self.fall_s)

    @cached_property
    def severity_of(self) -> dict[str, float]:
        return dict(self.severity)


LampFaultKind = Literal["lamp_out", "day_burning", "over_voltage", "door_open"]


@dataclass(frozen=True)
class LampFault(_Window):
    """Street-light faults of docs/domain-facts.md §4.3: lamp out, day-burning, over-voltage, door open."""

    sensors: frozenset[str]
    kind: LampFaultKind
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        _check(self.start, self.end)


@dataclass(frozen=True)
class ProcessUpset(_Window):
    """A treatment or combustion upset: ``targets`` (metric → value) replace the normal values.

    On a wastewater outlet it is a discharge breach (QCVN 40), on a stack an emission breach
    (QCVN 19). Values blend in and out over ``ramp_s``: a biological plant or a boiler does
    not jump.
    """

    sensor: str
    start: datetime
    end: datetime
    targets: tuple[tuple[str, float], ...]
    ramp_s: float = 1800.0

    def __post_init__(self) -> None:
        _check(self.start, self.end)

    def weight(self, t: float) -> float:
        s, e = self.span
        if t <= s or t >= e + self.ramp_s:
            return 0.0
        up = min(1.0, (t - s) / self.ramp_s)
        down = 1.0 if t <= e else 1.0 - (t - e) / self.ramp_s
        return min(up, down)


@dataclass(frozen=True)
class MissedCollection(_Window):
    """Waste collection of ``sensors`` skipped between ``start`` and ``end``."""

    sensors: frozenset[str]
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        _check(self.start, self.end)


def _rise_fall(t: float, s: float, e: float, rise_s: float, fall_s: float) -> float:
    """0 before ``s``; 1−exp rise towards 1 until ``e``; exponential decay after."""
    if t <= s:
        return 0.0
    if t <= e:
        return 1.0 - math.exp(-(t - s) / rise_s)
    at_end = 1.0 - math.exp(-(e - s) / rise_s)
    return at_end * math.exp(-(t - e) / fall_s)


PhysicalEvent = (
    RainEvent | AirEpisode | NoiseEvent | GasLeak | Fire | LampFault | ProcessUpset | MissedCollection
)
Event = PhysicalEvent | StuckValue | Spike | Drift | Dropout | QualityFlag | ClockSkew | LinkOutage

# Re-exported for scenario authors: one import gives every event type.
__all__ = [
    "AirEpisode",
    "ClockSkew",
    "Drift",
    "Dropout",
    "Event",
    "Fire",
    "GasLeak",
    "LampFault",
    "LampFaultKind",
    "LinkOutage",
    "MissedCollection",
    "NoiseEvent",
    "PhysicalEvent",
    "ProcessUpset",
    "QualityFlag",
    "RainEvent",
    "Spike",
    "StuckValue",
]
