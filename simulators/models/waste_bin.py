"""Smart waste bin: fill level (%), filling with the day's activity, emptied at collection.

Not in docs/domain-facts.md; [EST]: ward collection in Nam Định runs in the evening (≈19:00, ±30 min
from day to day); a bin collects 45–60 % of its volume in a normal day, mostly from 06 to
21 h, so a normal day peaks below ~70 % and never reaches the 80 % "full" alert. A
:class:`~simulators.events.MissedCollection` skips collections: the bin keeps filling and
reaches 100 % (it overflows; the sensor cannot read more).

The fill is a closed-form function of the sensor id and time (no state), so scenario
ground truth (when a bin passes 90 %) is computed exactly, whatever the seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from simulators.events import MissedCollection
from simulators.models.base import SensorContext
from simulators.randomness import hash_unit
from simulators.timebase import DAY_S, HOUR_S, local_day, local_day_start, local_hour

COLLECTION_HOUR = 19.0
_ACTIVITY_RAW = (
    0.2, 0.1, 0.1, 0.1, 0.2, 0.6, 1.2, 1.5, 1.3, 1.1, 1.2, 1.4,
    1.2, 1.0, 1.0, 1.1, 1.3, 1.5, 1.6, 1.4, 1.1, 0.8, 0.5, 0.3,
)
_HOURLY = tuple(w / sum(_ACTIVITY_RAW) for w in _ACTIVITY_RAW)  # share of a day's waste per hour
_CUM = tuple(sum(_HOURLY[:h]) for h in range(24))
_LOOKBACK_DAYS = 15


def _cum_days(t: float) -> float:
    """Waste produced since the epoch, in 'normal days' (piecewise linear within the hour)."""
    h = local_hour(t)
    i = min(23, math.floor(h))
    return local_day(t) + _CUM[i] + (h - i) * _HOURLY[i]


def collection_time(sensor: str, day: int) -> float:
    jitter_s = (hash_unit("collection", sensor, day) - 0.5) * HOUR_S
    return local_day_start(day) + COLLECTION_HOUR * HOUR_S + jitter_s


def fill_pct(sensor: str, t: float, missed: Sequence[tuple[float, float]] = ()) -> float:
    """True fill level of ``sensor`` at ``t``; collections inside ``missed`` windows are skipped."""
    daily = 45.0 + 15.0 * hash_unit("bin-load", sensor)
    residual = 2.0 + 3.0 * hash_unit("bin-residual", sensor)
    last = t - _LOOKBACK_DAYS * DAY_S
    for day in range(local_day(t), local_day(t) - _LOOKBACK_DAYS, -1):
        tc = collection_time(sensor, day)
        if tc <= t and not any(s <= tc < e for s, e in missed):
            last = tc
            break
    return min(100.0, residual + daily * (_cum_days(t) - _cum_days(last)))


class WasteBinModel:
    def __init__(self, ctx: SensorContext) -> None:
        self._id = ctx.id
        self._rng = ctx.rng()
        self._missed = [e.span for e in ctx.events_of(MissedCollection) if ctx.id in e.sensors]

    def sample(self, t: float) -> dict[str, float]:
        # Ultrasonic level over uneven rubbish: ±1.2 % [EST].
        value = fill_pct(self._id, t, self._missed) + 1.2 * self._rng.gauss(0.0, 1.0)
        return {"bin_fill_pct": min(100.0, max(0.0, value))}
