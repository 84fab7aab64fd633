"""Combustible-gas detector, %LEL.

Normal air reads ~0–2 %LEL (zero drift and cross-sensitivity of a catalytic bead) [EST].
A :class:`~simulators.events.GasLeak` adds the leak's concentration at this detector, with
plume turbulence of ~10 % on a one-minute scale. Common alarm set points are 10/20 %LEL
(low) and 40 %LEL (high).
"""

from __future__ import annotations

import math

from simulators.events import GasLeak
from simulators.models.base import SensorContext, Stepper
from simulators.randomness import Ar1

# The detector's noise, named so scenario ground truth can state how sure a reading is.
BASELINE_LEL = 0.6  # clean air reads ~0.6 %LEL on average
ZERO_SD_LEL = 0.35  # zero drift, correlated over ZERO_TAU_S
ZERO_TAU_S = 600.0
PLUME_SD = 0.1  # plume turbulence: ±10 % of the leak's concentration, correlated over PLUME_TAU_S
PLUME_TAU_S = 60.0


def reading_sd_lel(leak_lel: float) -> float:
    """Standard deviation of a reading, %LEL, where the leak alone would give ``leak_lel``."""
    return math.hypot(ZERO_SD_LEL, PLUME_SD * leak_lel)


class GasDetectorModel:
    def __init__(self, ctx: SensorContext) -> None:
        self._id = ctx.id
        rng = ctx.rng()
        self._step = Stepper(ctx.spec.interval_s)
        self._zero = Ar1(rng, ZERO_SD_LEL, ZERO_TAU_S)
        self._plume = Ar1(rng, PLUME_SD, PLUME_TAU_S)
        self._leaks = [e for e in ctx.events_of(GasLeak) if ctx.id in e.peak_of]

    def sample(self, t: float) -> dict[str, float]:
        dt = self._step.dt(t)
        lel = BASELINE_LEL + self._zero.step(dt)
        plume = 1.0 + self._plume.step(dt)
        for leak in self._leaks:
            lel += leak.lel(self._id, t) * plume
        return {"gas_lel": min(100.0, max(0.0, lel))}
