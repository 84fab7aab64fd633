"""Rule kinds and the rule set.

A rule is data (a frozen pydantic model, one module per kind). ``RuleSet.resolve`` gives the
rules that apply to one sensor, with every matching override merged in file order, and
``build_evaluator`` turns one rule into the evaluator of one (sensor, metric) series.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError

from contract.registry import SensorRef
from ops_center.domain.errors import RuleError
from ops_center.domain.rules import (
    anomaly,
    aqi_rule,
    flow,
    laeq,
    quality,
    rate,
    regulatory,
    rolling_mean,
    threshold,
)
from ops_center.domain.rules.base import (
    EngineSettings,
    Evaluator,
    Level,
    Names,
    RuleBase,
    Selector,
    Signal,
    Target,
)
from ops_center.domain.rules.connectivity import FreshnessRule, GatewayOfflineRule, GatewaySilentRule

Rule = Annotated[
    threshold.ThresholdRule
    | rate.RateRule
    | rolling_mean.RollingMeanRule
    | laeq.LaeqHourlyRule
    | regulatory.RegulatoryLimitRule
    | aqi_rule.NowcastAqiRule
    | quality.StuckRule
    | quality.BoundsRule
    | quality.ClockSkewRule
    | anomaly.AnomalyRule
    | flow.FlowBalanceRule
    | FreshnessRule
    | GatewayOfflineRule
    | GatewaySilentRule,
    Field(discriminator="kind"),
]
RULE_ADAPTER: TypeAdapter[Rule] = TypeAdapter(Rule)

# Kinds evaluated on values of one series (the rest are handled by the engine itself).
VALUE_KINDS = frozenset({"threshold", "rate", "rolling_mean", "laeq_hourly", "regulatory_limit",
                         "nowcast_aqi", "stuck", "anomaly", "flow_balance"})
FILTER_KINDS = frozenset({"out_of_bounds", "clock_skew"})
SENSOR_KINDS_OF_RULES = VALUE_KINDS | FILTER_KINDS | {"freshness"}
GATEWAY_KINDS = frozenset({"gateway_offline", "gateway_silent"})
RULE_KINDS = SENSOR_KINDS_OF_RULES | GATEWAY_KINDS

_BUILDERS: Mapping[str, Callable[[Any, Target], Evaluator | None]] = {
    "threshold": threshold.build,
    "rate": rate.build,
    "rolling_mean": rolling_mean.build,
    "laeq_hourly": laeq.build,
    "regulatory_limit": regulatory.build,
    "nowcast_aqi": aqi_rule.build,
    "stuck": quality.build_stuck,
    "anomaly": anomaly.build,
    "flow_balance": flow.build,
    "out_of_bounds": quality.build_bounds,
    "clock_skew": quality.build_skew,
}


def build_evaluator(rule: RuleBase, target: Target) -> Evaluator | None:
    """The evaluator of ``rule`` on one series, or None when it does not apply there."""
    if rule.metrics and target.metric not in rule.metrics:
        return None
    builder = _BUILDERS.get(getattr(rule, "kind", ""))
    return None if builder is None else builder(rule, target)


@dataclass(frozen=True, slots=True)
class Override:
    """Changes to one rule for the sensors its selector matches. ``origin`` names the file
    and line, for errors found when merging."""

    rule: str
    select: Selector
    patch: Mapping[str, Any]
    origin: str = ""


@dataclass(slots=True)
class RuleSet:
    """The rules, their overrides, and the engine settings."""

    rules: tuple[RuleBase, ...]
    overrides: tuple[Override, ...] = ()
    settings: EngineSettings = field(default_factory=EngineSettings)
    _cache: dict[tuple[str, tuple[int, ...]], RuleBase] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ids = [r.id for r in self.rules]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise RuleError(f"duplicate rule ids: {', '.join(sorted(dup))}")
        known = set(ids)
        for ov in self.overrides:
            if ov.rule not in known:
                raise RuleError(f"{ov.origin}: override of unknown rule {ov.rule!r}")

    def get(self, rule_id: str) -> RuleBase:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)

    def merged(self, rule: RuleBase, matching: tuple[int, ...]) -> RuleBase:
        if not matching:
            return rule
        key = (rule.id, matching)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        data = rule.model_dump(by_alias=True)
        for i in matching:
            data = merge_patch(data, self.overrides[i].patch)
        try:
            out: RuleBase = RULE_ADAPTER.validate_python(data)
        except ValidationError as exc:
            origins = ", ".join(self.overrides[i].origin for i in matching)
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise RuleError(f"rule {rule.id!r} with overrides at {origins}: {where}: {err['msg']}") from exc
        self._cache[key] = out
        return out

    def resolve(self, ref: SensorRef) -> tuple[RuleBase, ...]:
        """Enabled rules for one sensor (sensor-level kinds), overrides merged."""
        out: list[RuleBase] = []
        for rule in self.rules:
            if getattr(rule, "kind", "") not in SENSOR_KINDS_OF_RULES:
                continue
            matching = tuple(i for i, ov in enumerate(self.overrides)
                             if ov.rule == rule.id and ov.select.matches(ref))
            merged = self.merged(rule, matching)
            if merged.enabled and merged.select.matches(ref):
                out.append(merged)
        return tuple(out)

    def gateway_rules(self, site: str, gateway: str) -> tuple[RuleBase, ...]:
        out: list[RuleBase] = []
        for rule in self.rules:
            if getattr(rule, "kind", "") not in GATEWAY_KINDS:
                continue
            matching = tuple(i for i, ov in enumerate(self.overrides)
                             if ov.rule == rule.id and ov.select.matches_target(site, gateway)
                             and not (ov.select.kind or ov.select.sensor or ov.select.attrs))
            merged = self.merged(rule, matching)
            if merged.enabled and merged.select.matches_target(site, gateway):
                out.append(merged)
        return tuple(out)


def merge_patch(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in patch.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) and k != "select":
            out[k] = merge_patch(out[k], v)
        else:
            out[k] = v
    return out


__all__ = [
    "GATEWAY_KINDS",
    "RULE_ADAPTER",
    "RULE_KINDS",
    "EngineSettings",
    "Evaluator",
    "Level",
    "Names",
    "Override",
    "Rule",
    "RuleBase",
    "RuleSet",
    "Selector",
    "Signal",
    "Target",
    "build_evaluator",
]
