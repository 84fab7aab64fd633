"""Continuous emission monitor on a boiler stack (docs/domain-facts.md §2.5, §4.4).

§4.4 [EST] normal ranges: dust 30–150 mg/Nm³, SO₂ 100–600, NOx 150–500, CO 50–400, excess
O₂ 6–12 %, flue gas 120–180 °C; all follow the shift load (more excess air at low fire).
The normal values below stay under QCVN 19:2009 column B × Kp × Kv of the demo stacks
(dust 200, SO₂ 500, NOx 850, CO 1000 mg/Nm³), so every emission breach is one a scenario
injects (:class:`~simulators.events.ProcessUpset`). Flow ≤ 20 000 m³/h keeps Kp = 1.0.
"""

from __future__ import annotations

import math

from simulators.models.base import SensorContext, Stepper, apply_upsets, upsets_of
from simulators.models.shifts import load as shift_load
from simulators.randomness import Ar1


class StackModel:
    def __init__(self, ctx: SensorContext) -> None:
        rng = ctx.rng()
        self._rng = rng
        self._step = Stepper(ctx.spec.interval_s)
        self._design_m3h = ctx.attr_float("design_m3h", 15_000.0)
        self._dust = Ar1(rng, 0.12, 1800.0)
        self._so2 = Ar1(rng, 0.1, 3600.0)
        self._nox = Ar1(rng, 0.1, 1800.0)
        self._co = Ar1(rng, 0.2, 900.0)
        self._o2 = Ar1(rng, 0.3, 900.0)
        self._temp = Ar1(rng, 2.0, 1800.0)
        self._flow = Ar1(rng, 0.05, 900.0)
        self._upsets = upsets_of(ctx)

    def sample(self, t: float) -> dict[str, float]:
        dt = self._step.dt(t)
        load = shift_load(t)
        values = {
            "stack_dust": (55.0 + 45.0 * load) * math.exp(self._dust.step(dt)),
            "stack_so2": (150.0 + 150.0 * load) * math.exp(self._so2.step(dt)),
            "stack_nox": (200.0 + 130.0 * load) * math.exp(self._nox.step(dt)),
            "stack_co": (90.0 + 120.0 * load) * math.exp(self._co.step(dt)),
            "stack_o2_pct": 11.0 - 3.5 * load + self._o2.step(dt),
            "stack_temp_c": 125.0 + 40.0 * load + self._temp.step(dt),
            "stack_flow_m3h": self._design_m3h * (0.35 + 0.65 * load) * math.exp(self._flow.step(dt)),
        }
        apply_upsets(values, self._upsets, t, self._rng)
        return values
