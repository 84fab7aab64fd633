"""Combustible-gas detector, %LEL.

Normal air reads ~0–2 %LEL (zero drift and cross-sensitivity of a catalytic bead) [EST].
A :class:`~simulators.events.GasLeak` adds the leak's concentration at this detector, with
plume turbulence of ~10 % on a one-minute scale. Common alarm set points are 10/20 %LEL
(low) and 40 %LEL (high).
"""

from __future__ import annotations

from simulators.events import GasLeak
from simulators.models.base import SensorContext, Stepper
from simulators.randomness import Ar1


class GasDetectorModel:
    def __init__(self, ctx: SensorContext) -> None:
        self._id = ctx.id
        rng = ctx.rng()
        self._step = Stepper(ctx.spec.interval_s)
        self._zero = Ar1(rng, 0.35, 600.0)
        self._plume = Ar1(rng, 0.1, 60.0)
        self._leaks = [e for e in ctx.events_of(GasLeak) if ctx.id in e.peak_of]

    def sample(self, t: float) -> dict[str, float]:
        dt = self._step.dt(t)
        lel = 0.6 + self._zero.step(dt)
        plume = 1.0 + self._plume.step(dt)
        for leak in self._leaks:
            lel += leak.lel(self._id, t) * plume
        return {"gas_lel": min(100.0, max(0.0, lel))}
