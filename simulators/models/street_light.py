"""Street light with a smart controller: power, voltage, current, driver temperature, cabinet door.

docs/domain-facts.md §4.3 [EST]:
* on around sunset, off around sunrise at ~20.4°N (12.5 h of light in December, 10.5 h in
  June); a photocell switches ~15 min after sunset and ~5 min before sunrise;
* 100 % until 23:00, then 60 % (the two-level dimming of the Đà Nẵng pilot);
* LED drivers draw constant power at the rated wattage (attr ``rated_w``), power factor
  ≥ 0.9, 0.5–0.7 A at 150 W, driver 40–65 °C; mains 220 V ± 10 %, sagging in the evening peak;
* faults (:class:`~simulators.events.LampFault`): lamp out, day-burning, over-voltage,
  cabinet door open.
An operator command (``set_lamp``, docs/contract.md) overrides the schedule until ``auto``.
"""

from __future__ import annotations

import math

from simulators.events import LampFault
from simulators.models import climate
from simulators.models.base import SensorContext, Stepper
from simulators.randomness import Ar1
from simulators.sun import sunrise_sunset
from simulators.timebase import interp_hourly, local_hour

SWITCH_ON_AFTER_SUNSET_S = 15 * 60
SWITCH_OFF_BEFORE_SUNRISE_S = 5 * 60
DIM_FROM_HOUR = 23.0
DIM_LEVEL = 0.6
# Mains voltage offset by hour, V: evening peak sag, late-night rise [EST].
_GRID_V = (3, 4, 5, 5, 5, 4, 1, -1, -2, -2, -2, -2, -1, -1, -1, -2, -3, -4, -6, -6, -5, -3, 0, 2)


def switch_on_time(t: float, lat: float, lon: float) -> float:
    """When the lamp switches on in the evening of the local day containing ``t``."""
    return sunrise_sunset(t, lat, lon)[1] + SWITCH_ON_AFTER_SUNSET_S


def scheduled_level(t: float, lat: float, lon: float) -> float:
    """Scheduled light output, 0 (off), 0.6 (dimmed) or 1.0 (full)."""
    rise, sset = sunrise_sunset(t, lat, lon)
    if rise - SWITCH_OFF_BEFORE_SUNRISE_S <= t < sset + SWITCH_ON_AFTER_SUNSET_S:
        return 0.0
    hour = local_hour(t)
    return DIM_LEVEL if hour >= DIM_FROM_HOUR or hour < 12.0 else 1.0


class StreetLightModel:
    def __init__(self, ctx: SensorContext) -> None:
        self._ctx = ctx
        rng = ctx.rng()
        self._rng = rng
        self._step = Stepper(ctx.spec.interval_s)
        self._rated_w = ctx.attr_float("rated_w", 150.0)
        self._volt = Ar1(rng, 1.5, 1200.0)
        self._faults = [e for e in ctx.events_of(LampFault) if ctx.id in e.sensors]
        self._overrides: list[tuple[float, float | None]] = []
        self._driver_c: float | None = None

    def override(self, t: float, level: float | None) -> None:
        """From ``t`` on, light at ``level`` (0..1) regardless of the schedule; None = back to schedule."""
        self._overrides.append((t, level))

    def _active(self, t: float) -> set[str]:
        return {f.kind for f in self._faults if f.span[0] <= t < f.span[1]}

    def sample(self, t: float) -> dict[str, float]:
        dt = self._step.dt(t)
        ctx = self._ctx
        faults = self._active(t) if self._faults else set()
        scheduled = scheduled_level(t, ctx.lat, ctx.lon)
        level = scheduled
        for since, lvl in self._overrides:
            if since <= t:
                level = scheduled if lvl is None else lvl
        if "day_burning" in faults:
            level = 1.0  # the controller or contactor is stuck on
        lit = level > 0.0 and "lamp_out" not in faults

        volts = 220.0 + interp_hourly(_GRID_V, local_hour(t)) + self._volt.step(dt)
        if "over_voltage" in faults:
            volts = 252.0 + 2.0 * abs(self._volt.x)
        power = self._rated_w * level * (1.0 + 0.01 * self._rng.gauss(0.0, 1.0)) if lit else 0.0
        pf = 0.95 if level >= 1.0 else 0.92
        current = power / (volts * pf) if lit else 0.0

        ambient = climate.air_temp_c(t, ctx.seed, ctx.rain_mm_h(t))
        target = ambient + (25.0 * level * self._rated_w / 150.0 if lit else 0.0)
        if self._driver_c is None:
            self._driver_c = target
        self._driver_c += (target - self._driver_c) * (1.0 - math.exp(-dt / 900.0))
        return {
            "lamp_power_w": power,
            "lamp_voltage_v": volts,
            "lamp_current_a": current,
            "lamp_temp_c": self._driver_c + 0.3 * self._rng.gauss(0.0, 1.0),
            "cabinet_door_open": 1.0 if "door_open" in faults else 0.0,
        }
