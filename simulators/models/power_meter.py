"""Power meter of a factory or of the treatment plant: active power (kW) and power factor.

Follows the shift load (docs/domain-facts.md §4.4). [EST] magnitudes: a dyeing or machine shop of
~0.5 MW peak; the treatment plant's blowers and pumps ~35–80 kW. Meters with a ``factory``
attr are factories, the others plant utilities.
"""

from __future__ import annotations

import math

from simulators.models.base import SensorContext, Stepper
from simulators.models.shifts import load as shift_load
from simulators.randomness import Ar1, hash_unit


class PowerMeterModel:
    def __init__(self, ctx: SensorContext) -> None:
        rng = ctx.rng()
        self._rng = rng
        self._step = Stepper(ctx.spec.interval_s)
        if ctx.attr_str("factory", ""):
            scale = 0.8 + 0.4 * hash_unit("factory-size", ctx.attr_str("factory", ""))
            self._base_kw, self._span_kw = 120.0 * scale, 480.0 * scale
        else:
            self._base_kw, self._span_kw = 35.0, 45.0
        self._noise = Ar1(rng, 0.04, 600.0)

    def sample(self, t: float) -> dict[str, float]:
        dt = self._step.dt(t)
        load = shift_load(t)
        kw = (self._base_kw + self._span_kw * load) * math.exp(self._noise.step(dt))
        pf = 0.86 + 0.06 * load + 0.005 * self._rng.gauss(0.0, 1.0)
        return {"power_kw": kw, "power_factor": min(0.99, max(0.5, pf))}
