"""Discharge limits with site coefficients: wastewater (QCVN 40, Cmax = C × Kq × Kf) and stack
emissions (QCVN 19, Cmax = C × Kp × Kv).

The column (A/B) and the coefficients come from sensor attributes (``column``, ``kq``,
``kf``, ``kp``, ``kv``); coefficients are not applied to metrics marked ``factored: false``
(pH and temperature, docs/domain-facts.md §2.3). A missing coefficient counts as 1.0. Exceeding means
strictly above the maximum (or below the minimum): a value equal to Cmax complies.
The default tables are QCVN 40:2011 and 19:2009; the 2025/2024 replacements were not
retrieved, so every number is configurable data (``defaults.yaml``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from ops_center.domain.alerts import Severity, severity_rank
from ops_center.domain.rules.base import RuleBase, Signal, Strict, Target, attr_float
from ops_center.domain.rules.levels import LevelMap, Machine, run_levels


class MetricLimit(Strict):
    min: float | None = None
    max: float | None = None
    factored: bool = True
    hysteresis: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _some_bound(self) -> MetricLimit:
        if self.min is None and self.max is None:
            raise ValueError("a limit needs min, max or both")
        if self.min is not None and self.max is not None and self.min >= self.max:
            raise ValueError("min must be below max")
        return self


class RegulatoryLimitRule(RuleBase):
    kind: Literal["regulatory_limit"]
    regulation: str
    column_attr: str = "column"
    default_column: str = "B"
    factor_attrs: tuple[str, ...] = ()
    limits: dict[str, dict[str, MetricLimit]] = Field(min_length=1)
    severity: Severity = "warning"
    # Above max × this ratio the alert is one severity higher (None: never).
    critical_ratio: float | None = Field(default=None, gt=1)
    raise_after_s: float = Field(default=0.0, ge=0)
    # Raise on the Nth consecutive reading over the limit (and not before raise_after_s).
    raise_after_readings: int = Field(default=1, ge=1)
    clear_after_s: float = Field(default=0.0, ge=0)


class RegulatoryEvaluator:
    __slots__ = ("lmap", "machine", "rule")

    def __init__(self, rule: RegulatoryLimitRule, lmap: LevelMap) -> None:
        self.rule = rule
        self.lmap = lmap
        self.machine = Machine()

    def feed(self, ts: list[float], vals: list[float], sent_s: float) -> list[Signal]:
        m = self.machine
        if m.level == 0:  # fast path (limits are strict)
            lm = self.lmap
            if max(vals) <= lm.first_above and min(vals) >= lm.first_below:
                m.since = None
                return []
        r = self.rule
        return run_levels(self.machine, self.lmap, ts, vals, r.raise_after_s, r.clear_after_s,
                          raise_after_n=r.raise_after_readings)

    def state(self) -> Any:
        return self.machine.state()

    def load(self, state: Any) -> None:
        self.machine.load(state)


def build(rule: RegulatoryLimitRule, target: Target) -> RegulatoryEvaluator | None:
    by_column = rule.limits.get(target.metric)
    if by_column is None:
        return None
    column = target.attr(rule.column_attr)
    limit = by_column.get(str(column) if column is not None else rule.default_column)
    if limit is None:
        return None
    k = 1.0
    if limit.factored:
        for name in rule.factor_attrs:
            if target.attr(name) is None:
                continue
            factor = attr_float(target, name)
            if factor is None:
                return None  # a non-numeric coefficient: the registry is wrong, do not guess
            k *= factor
    base = severity_rank(rule.severity)
    above: list[tuple[float, int]] = []
    below: list[tuple[float, int]] = []
    if limit.max is not None:
        above.append((limit.max * k, base))
        if rule.critical_ratio is not None:
            above.append((limit.max * k * rule.critical_ratio, min(base + 1, 4)))
    if limit.min is not None:
        below.append((limit.min, base))
    return RegulatoryEvaluator(rule, LevelMap(above, below, limit.hysteresis, strict=True))
