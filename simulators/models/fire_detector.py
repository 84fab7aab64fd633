"""Fire detector (heat + optical smoke): temperature °C and smoke obscuration %/m.

Normal: indoor temperature of a working shed (outdoor + a few degrees with the machines
running) and smoke ~0. A :class:`~simulators.events.Fire` drives both towards its peak
(fixed-temperature heat detectors alarm at 57–68 °C) [EST].
"""

from __future__ import annotations

from simulators.events import Fire
from simulators.models import climate
from simulators.models.base import SensorContext, Stepper
from simulators.models.shifts import load as shift_load
from simulators.randomness import Ar1


class FireDetectorModel:
    def __init__(self, ctx: SensorContext) -> None:
        self._ctx = ctx
        rng = ctx.rng()
        self._rng = rng
        self._step = Stepper(ctx.spec.interval_s)
        self._temp = Ar1(rng, 0.2, 600.0)
        self._fires = [e for e in ctx.events_of(Fire) if ctx.id in e.severity_of]

    def sample(self, t: float) -> dict[str, float]:
        dt = self._step.dt(t)
        temp = climate.air_temp_c(t, self._ctx.seed) + 3.0 + 2.0 * shift_load(t) + self._temp.step(dt)
        smoke = 0.05 + abs(0.03 * self._rng.gauss(0.0, 1.0))
        for fire in self._fires:
            level = fire.level(self._ctx.id, t)
            temp += (fire.peak_temp_c - temp) * level
            smoke += fire.peak_smoke_pct * level
        return {"fire_temp_c": min(200.0, temp), "smoke_pct": min(100.0, smoke)}
