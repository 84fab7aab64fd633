"""Automatic wastewater station at a treatment-plant outlet (docs/domain-facts.md §2.5, §4.4).

§2.5: continuous parameters are inflow, outflow, temperature, pH, TSS, COD and NH₄⁺.
§4.4 [EST] normal treated ranges: pH 6.5–8.0, 27–35 °C, COD 40–100 mg/L, TSS 10–50,
NH₄⁺-N 0.5–6; flow follows shifts, outflow ≈ inflow. The normal values below stay under
QCVN 40:2011 column B × Kq × Kf of the demo outlet (COD 135, TSS 90, NH₄⁺ 9 mg/L), so
every discharge breach is one a scenario injects (:class:`~simulators.events.ProcessUpset`).
An operator's ``set_valve`` (contract/commands.py) opens the bypass to the emergency holding
pond: while it is open the outlet discharges nothing (outflow 0).
"""

from __future__ import annotations

import math

from simulators.models import climate
from simulators.models.base import SensorContext, Stepper, apply_upsets, upsets_of
from simulators.models.shifts import load as shift_load
from simulators.randomness import Ar1

OUT_OVER_IN = 0.97  # treated outflow / inflow (sludge, evaporation), scatter ±1 %


def inflow_m3h(design_m3h: float, load: float) -> float:
    """Mean inflow at a shift load (the model scatters ~8 % around it)."""
    return design_m3h * (0.2 + 0.8 * load)


def normal_cod_mg_l(load: float) -> float:
    """Mean outlet COD at a given shift load (the model scatters ±10 % around it)."""
    return 50.0 + 30.0 * load


class WastewaterModel:
    def __init__(self, ctx: SensorContext) -> None:
        self._ctx = ctx
        rng = ctx.rng()
        self._rng = rng
        self._step = Stepper(ctx.spec.interval_s)
        # ~120 m³/h at full load ≈ 1 900 m³/day: a "large" discharger under NĐ 08/2022 (§2.5).
        self._design_m3h = ctx.attr_float("design_m3h", 120.0)
        self._flow = Ar1(rng, 0.08, 1200.0)
        self._ph = Ar1(rng, 0.2, 7200.0)
        self._temp = Ar1(rng, 0.4, 3600.0)
        self._cod = Ar1(rng, 0.1, 3600.0)
        self._tss = Ar1(rng, 0.15, 3600.0)
        self._nh4 = Ar1(rng, 0.2, 7200.0)
        self._upsets = upsets_of(ctx)
        self._bypass: list[tuple[float, bool]] = []

    def set_bypass(self, t: float, open_: bool) -> None:
        """From ``t`` on, the bypass valve is open (effluent to the holding pond) or closed."""
        self._bypass.append((t, open_))

    def _bypass_open(self, t: float) -> bool:
        state = False
        for since, open_ in self._bypass:
            if since <= t:
                state = open_
        return state

    def sample(self, t: float) -> dict[str, float]:
        dt = self._step.dt(t)
        load = shift_load(t)
        flow_in = inflow_m3h(self._design_m3h, load) * math.exp(self._flow.step(dt))
        ambient = climate.air_temp_c(t, self._ctx.seed)
        values = {
            "ww_ph": 7.3 + 0.1 * load + self._ph.step(dt),
            "ww_temp_c": 27.0 + 0.35 * (ambient - 16.0) + 2.0 * load + self._temp.step(dt),
            "ww_cod": normal_cod_mg_l(load) * math.exp(self._cod.step(dt)),
            "ww_tss": (18.0 + 14.0 * load) * math.exp(self._tss.step(dt)),
            "ww_nh4": (1.5 + 2.0 * load) * math.exp(self._nh4.step(dt)),
            "ww_flow_in_m3h": flow_in,
            "ww_flow_out_m3h": flow_in * (OUT_OVER_IN + 0.01 * self._rng.gauss(0.0, 1.0)),
        }
        apply_upsets(values, self._upsets, t, self._rng)
        if self._bypass and self._bypass_open(t):
            values["ww_flow_out_m3h"] = 0.0
        return values
