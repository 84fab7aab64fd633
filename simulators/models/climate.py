"""Ambient weather of Nam Định: air temperature and humidity by month and hour.

Not in docs/domain-facts.md; the monthly normals are [EST] values typical of the Red River Delta
(cool humid winter ~16–19 °C, hot humid summer ~29–30 °C, relative humidity 80–90 %),
good enough for the temperature channels of air stations, fire detectors and effluent.
Day-to-day anomalies are hashed per local day (a cold surge lasts days, not minutes).
"""

from __future__ import annotations

import math

from simulators.randomness import hash_normal
from simulators.timebase import DAY_S, LOCAL_OFFSET_S, interp_hourly, interp_monthly, local_hour

TEMP_MONTHLY_C = (16.6, 17.4, 19.9, 23.7, 27.4, 29.2, 29.6, 28.9, 27.8, 25.4, 22.1, 18.6)
RH_MONTHLY_PCT = (83.0, 88.0, 91.0, 90.0, 84.0, 82.0, 83.0, 86.0, 85.0, 82.0, 80.0, 80.0)
# Diurnal temperature shape: minimum near 05–06 h, maximum near 14 h; ±1 scale.
_DIURNAL = (
    -0.75, -0.85, -0.92, -0.97, -1.0, -1.0, -0.9, -0.65, -0.35, -0.05, 0.25, 0.55,
    0.8, 0.95, 1.0, 0.95, 0.8, 0.55, 0.3, 0.1, -0.1, -0.3, -0.45, -0.6,
)
_AMPLITUDE_C = 3.5


def day_anomaly(seed: int, what: str, t: float) -> float:
    """A smooth day-to-day standard-normal anomaly, interpolated between local noons."""
    x = (t + LOCAL_OFFSET_S) / DAY_S - 0.5  # days since epoch, local, centred on noon
    d = math.floor(x)
    f = x - d
    return (1.0 - f) * hash_normal(seed, what, d) + f * hash_normal(seed, what, d + 1)


def air_temp_c(t: float, seed: int, rain_mm_h: float = 0.0) -> float:
    base = interp_monthly(TEMP_MONTHLY_C, t) + 1.5 * day_anomaly(seed, "temp", t)
    cooled = min(4.0, rain_mm_h / 5.0)  # evaporative cooling under rain
    return base + _AMPLITUDE_C * interp_hourly(_DIURNAL, local_hour(t)) - cooled


def humidity_pct(t: float, seed: int, rain_mm_h: float = 0.0) -> float:
    rh = interp_monthly(RH_MONTHLY_PCT, t) - 9.0 * interp_hourly(_DIURNAL, local_hour(t))
    rh += 3.0 * day_anomaly(seed, "rh", t)
    if rain_mm_h > 0.0:
        rh = max(rh, 96.0)
    return min(99.0, max(35.0, rh))
