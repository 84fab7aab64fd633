"""Flow balance at a wastewater outlet: more water leaving than entering is a bypass.

docs/domain-facts.md §4.4: a treatment plant's outflow follows its inflow (out ≈ in, a few percent
less: sludge and evaporation); "out > in, or out with no in" means untreated water reaches
the outlet around the inflow meter (a bypass). The two flows are two metrics of one
station (``ww_flow_in_m3h``, ``ww_flow_out_m3h``, contract/catalog.py), measured at the
same instants, so the rule pairs the readings of both metrics by timestamp and judges the
excess ``(out − in) / max(in, min_inflow)`` against ``margin_pct``, with hysteresis and
the usual holds (time and consecutive readings).

One evaluator core serves both series of a sensor (``Target.shared``); the alert is on the
outflow metric whichever of the two readings completes a pair. The messages carry the
outflow and the largest outflow the margin allows at that inflow.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from ops_center.domain.alerts import Severity, severity_rank
from ops_center.domain.rules.base import RuleBase, Signal, Target
from ops_center.domain.rules.levels import LevelMap, Machine

# Unpaired readings older than this behind the newest one are dropped (a lost reading of
# one metric must not keep its twin waiting forever).
_PAIR_HORIZON_S = 3600.0


class FlowBalanceRule(RuleBase):
    kind: Literal["flow_balance"]
    inflow: str = "ww_flow_in_m3h"
    outflow: str = "ww_flow_out_m3h"
    margin_pct: float = Field(default=10.0, gt=0)       # out above in by more than this
    hysteresis_pct: float = Field(default=5.0, ge=0)    # clear below margin − hysteresis
    # Inflow below this counts as this (m³/h): "out with no in" is a bypass too, and a
    # tiny inflow must not turn meter noise into a huge percentage.
    min_inflow: float = Field(default=1.0, gt=0)
    severity: Severity = "warning"
    raise_after_s: float = Field(default=0.0, ge=0)
    raise_after_readings: int = Field(default=1, ge=1)
    clear_after_s: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _two_metrics(self) -> FlowBalanceRule:
        if self.inflow == self.outflow:
            raise ValueError("inflow and outflow must be different metrics")
        if self.hysteresis_pct >= self.margin_pct:
            raise ValueError("hysteresis_pct must be below margin_pct")
        return self


class _Balance:
    """The state of one rule at one station, shared by its inflow and outflow series."""

    __slots__ = ("lmap", "machine", "pending", "rule")

    def __init__(self, rule: FlowBalanceRule) -> None:
        self.rule = rule
        self.lmap = LevelMap([(rule.margin_pct, severity_rank(rule.severity))], [], rule.hysteresis_pct,
                             strict=True)
        self.machine = Machine()
        # side (0 = in, 1 = out) -> {ts: value} readings still waiting for their twin.
        self.pending: tuple[dict[float, float], dict[float, float]] = ({}, {})

    def feed(self, side: int, ts: list[float], vals: list[float]) -> list[Signal]:
        mine, other = self.pending[side], self.pending[1 - side]
        r = self.rule
        idx: list[int] = []
        times: list[float] = []
        excess: list[float] = []
        outs: list[float] = []
        limits: list[float] = []
        for i, (t, v) in enumerate(zip(ts, vals, strict=True)):
            twin = other.pop(t, None)
            if twin is None:
                mine[t] = v
                continue
            inflow, outflow = (v, twin) if side == 0 else (twin, v)
            base = max(inflow, r.min_inflow)
            idx.append(i)
            times.append(t)
            excess.append(100.0 * (outflow - inflow) / base)
            outs.append(outflow)
            limits.append(inflow + base * r.margin_pct / 100.0)
        if ts:
            horizon = ts[-1] - _PAIR_HORIZON_S
            for book in (mine, other):
                if book and next(iter(book)) < horizon:
                    for t in [t for t in book if t < horizon]:
                        del book[t]
        if not times:
            return []
        m = self.machine
        if m.level == 0 and m.since is None and self.lmap.quiet(min(excess), max(excess)):
            return []
        up = [self.lmap.up(x) for x in excess]
        down = [self.lmap.down(x) for x in excess]
        return [Signal(idx[k], level, outs[k], limits[k])
                for k, level in m.step(times, up, down, r.raise_after_s, r.clear_after_s,
                                       r.raise_after_readings)]

    def state(self) -> Any:
        return {"m": self.machine.state(),
                "p": [[[t, v] for t, v in book.items()] for book in self.pending]}

    def load(self, state: Any) -> None:
        self.machine.load(state["m"])
        p_in, p_out = state["p"]
        self.pending = ({float(t): float(v) for t, v in p_in}, {float(t): float(v) for t, v in p_out})


class FlowBalanceEvaluator:
    """One side (inflow or outflow series) of a station's :class:`_Balance`."""

    __slots__ = ("_core", "_side", "alert_metric", "rule")

    def __init__(self, rule: FlowBalanceRule, core: _Balance, side: int) -> None:
        self.rule = rule
        self._core = core
        self._side = side
        self.alert_metric = rule.outflow

    def feed(self, ts: list[float], vals: list[float], sent_s: float) -> list[Signal]:
        return self._core.feed(self._side, ts, vals)

    def state(self) -> Any:
        return self._core.state()

    def load(self, state: Any) -> None:
        self._core.load(state)


def build(rule: FlowBalanceRule, target: Target) -> FlowBalanceEvaluator | None:
    if target.metric not in (rule.inflow, rule.outflow):
        return None
    if rule.inflow not in target.ref.spec.metrics or rule.outflow not in target.ref.spec.metrics:
        return None  # the station does not measure both flows
    if target.shared is None:
        return None  # judged across two series: only an engine that shares state per sensor can
    core = target.shared.get(("flow_balance", rule.id))
    if not isinstance(core, _Balance):
        core = _Balance(rule)
        target.shared[("flow_balance", rule.id)] = core
    return FlowBalanceEvaluator(rule, core, 0 if target.metric == rule.inflow else 1)
