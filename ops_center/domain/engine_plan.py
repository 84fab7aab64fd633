"""The rule engine's plans: per (sensor, metric) series the rules that apply, bound to their
evaluators and alert contexts, built once from the rule set and the registry; and the pure
form of one rule (:func:`evaluate`). The engine itself is ops_center/domain/engine.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from contract.catalog import METRICS
from contract.registry import Registry, SensorRef
from ops_center.domain.alerts import AlertBook, AlertChange, AlertContext, severity_rank
from ops_center.domain.rules import RuleSet, build_evaluator
from ops_center.domain.rules.base import EngineSettings, Evaluator, RuleBase, Target
from ops_center.domain.rules.connectivity import FreshnessRule, GatewayOfflineRule, GatewaySilentRule
from ops_center.domain.rules.quality import BoundsEvaluator, ClockSkewEvaluator
from ops_center.domain.rules.regulatory import RegulatoryEvaluator
from ops_center.domain.rules.threshold import ThresholdEvaluator


@dataclass(slots=True)
class Bound:
    rule: RuleBase
    evaluator: Evaluator
    ctx: AlertContext


@dataclass(slots=True)
class Series:
    ref: SensorRef
    metric: str
    skew: Bound | None            # clock skew: withholds readings from the future
    bounds: Bound | None          # physical bounds: withholds impossible values
    values: list[Bound]           # rules on the values that keep history (always fed)
    levels: list[Bound]           # pure level rules (threshold, regulatory): skipped while quiet
    fresh: FreshnessRule | None
    fresh_ctx: AlertContext | None
    silence_s: float
    last_ts: float | None = None
    fresh_key: tuple[str, str, str] | None = None
    max_ahead_s: float = float("inf")
    lo: float = float("-inf")
    hi: float = float("inf")
    flagged: bool = False          # a skew or bounds alert is active on this series
    # Values strictly inside (quiet_lo, quiet_hi) reach no level rule's threshold; while
    # every level rule is idle (``busy`` False) such readings need not be fed to them.
    quiet_lo: float = float("-inf")
    quiet_hi: float = float("inf")
    busy: bool = False
    silent: bool = False           # a freshness alert is active on this series

    @property
    def filters(self) -> list[Bound]:
        return [b for b in (self.skew, self.bounds) if b is not None]

    @property
    def rules(self) -> list[Bound]:
        return [*self.filters, *self.values, *self.levels]


@dataclass(slots=True)
class GatewayPlan:
    id: str
    site: str
    series: list[Series]
    offline: list[tuple[GatewayOfflineRule, AlertContext]]
    silent: list[tuple[GatewaySilentRule, AlertContext]]
    online: bool | None = None
    status_ts: float | None = None
    last_sent: float | None = None
    last_received: float | None = None
    live_ts: float | None = None        # newest non-late reading time
    live_received: float | None = None  # wall time it arrived
    baseline: float | None = None       # first live reading time (silence of never-seen series)
    next_check: float = float("-inf")


@dataclass(slots=True)
class EngineStats:
    readings: int = 0
    evaluated: int = 0
    unknown: int = 0
    out_of_order: int = 0
    skipped_quality: int = 0
    in_maintenance: int = 0
    withheld: int = 0  # out of bounds or clock-skewed
    by_rule: dict[str, int] = field(default_factory=dict)


def build_plans(rules: RuleSet, registry: Registry) -> tuple[
    dict[tuple[str, str], Series], dict[str, GatewayPlan]]:
    """Per (sensor, metric) the rules bound to it, and per gateway its series and gateway rules."""
    all_series: dict[tuple[str, str], Series] = {}
    gateways: dict[str, GatewayPlan] = {}
    for site, gw in registry.iter_gateways():
        offline: list[tuple[GatewayOfflineRule, AlertContext]] = []
        silent: list[tuple[GatewaySilentRule, AlertContext]] = []
        for rule in rules.gateway_rules(site.id, gw.id):
            ctx = AlertContext(rule.id, str(getattr(rule, "kind", "")), rule.category,
                               site.id, gw.id, None, None,
                               f"{rule.title.vi}: {gw.id}", f"{rule.title.en}: {gw.id}")
            if isinstance(rule, GatewayOfflineRule):
                offline.append((rule, ctx))
            elif isinstance(rule, GatewaySilentRule):
                silent.append((rule, ctx))
        series: list[Series] = []
        for spec in gw.sensors:
            ref = registry.sensors[spec.id]
            resolved = rules.resolve(ref)
            shared: dict[Any, Any] = {}
            for metric in spec.metrics:
                s = plan_series(ref, metric, resolved, registry, rules.settings, shared)
                all_series[(spec.id, metric)] = s
                series.append(s)
        gateways[gw.id] = GatewayPlan(gw.id, site.id, series, offline, silent)
    return all_series, gateways


def plan_series(ref: SensorRef, metric: str, resolved: tuple[RuleBase, ...], registry: Registry,
                settings: EngineSettings, shared: dict[Any, Any] | None = None) -> Series:
    lat, lon = position(registry, ref)
    target = Target(ref, metric, settings, lat, lon, shared)
    skew: Bound | None = None
    bounds: Bound | None = None
    values: list[Bound] = []
    levels: list[Bound] = []
    fresh: FreshnessRule | None = None
    for rule in resolved:
        if isinstance(rule, FreshnessRule):
            if not rule.metrics or metric in rule.metrics:
                fresh = rule
            continue
        ev = build_evaluator(rule, target)
        if ev is None:
            continue
        # A rule judged across metrics raises its alert on one of them.
        bound = Bound(rule, ev, alert_context(rule, ref, getattr(ev, "alert_metric", metric)))
        if isinstance(ev, ClockSkewEvaluator):
            skew = bound if skew is None or ev.max_ahead < skew_of(skew) else skew
        elif isinstance(ev, BoundsEvaluator):
            bounds = bound
        elif isinstance(ev, ThresholdEvaluator | RegulatoryEvaluator):
            levels.append(bound)
        else:
            values.append(bound)
    fresh_ctx = alert_context(fresh, ref, metric) if fresh is not None else None
    silence = fresh.silence_s(ref.spec.interval_s) if fresh is not None else float("inf")
    s = Series(ref, metric, skew, bounds, values, levels, fresh, fresh_ctx, silence)
    for b in levels:
        lm = b.evaluator.lmap  # type: ignore[attr-defined]
        s.quiet_lo = max(s.quiet_lo, lm.first_below)
        s.quiet_hi = min(s.quiet_hi, lm.first_above)
    s.fresh_key = fresh_ctx.key if fresh_ctx is not None else None
    if skew is not None:
        s.max_ahead_s = skew_of(skew)
    if bounds is not None and isinstance(bounds.evaluator, BoundsEvaluator):
        s.lo, s.hi = bounds.evaluator.lo, bounds.evaluator.hi
    return s


def position(registry: Registry, ref: SensorRef) -> tuple[float | None, float | None]:
    """The sensor's location, else its gateway's, else its site's (for sun-bound rules)."""
    loc = ref.spec.location
    if loc is None:
        gw = registry.gateways.get(ref.gateway)
        loc = gw.location if gw is not None else None
    if loc is None:
        site = registry.sites.get(ref.site)
        loc = site.location if site is not None else None
    return (loc.lat, loc.lon) if loc is not None else (None, None)


def alert_context(rule: RuleBase, ref: SensorRef, metric: str) -> AlertContext:
    m = METRICS[metric]
    kind = str(getattr(rule, "kind", ""))
    return AlertContext(rule.id, kind, rule.category, ref.site, ref.gateway, ref.id, metric,
                        f"{rule.title.vi} — {ref.id}: {m.name_vi}",
                        f"{rule.title.en} — {ref.id}: {m.name_en}")


def idle(b: Bound) -> bool:
    m = b.evaluator.machine  # type: ignore[attr-defined]
    return bool(m.level == 0 and m.since is None and m.down_since is None)


def skew_of(b: Bound) -> float:
    ev = b.evaluator
    return ev.max_ahead if isinstance(ev, ClockSkewEvaluator) else float("inf")


def rule_rank(rule: FreshnessRule | GatewayOfflineRule | GatewaySilentRule) -> int:
    return severity_rank(rule.severity)


def evaluate(rule: RuleBase, ref: SensorRef, metric: str, window: Sequence[tuple[datetime, float]],
             now: datetime, settings: EngineSettings | None = None) -> AlertChange | None:
    """The pure form of one rule (docs/style.md): the last alert change ``rule`` makes on the
    readings of one series in ``window`` (time order), taking readings up to ``now``.

    For trying a rule on a stored series ("what would this threshold have done last
    week?"); the engine keeps the same evaluators alive across batches instead.
    """
    loc = ref.spec.location
    target = Target(ref, metric, settings if settings is not None else EngineSettings(),
                    loc.lat if loc is not None else None, loc.lon if loc is not None else None)
    ev = build_evaluator(rule, target)
    if ev is None:
        return None
    cut = now.timestamp()
    pairs = sorted((t.timestamp(), v) for t, v in window if t.timestamp() <= cut)
    if not pairs:
        return None
    ts = [t for t, _ in pairs]
    vals = [v for _, v in pairs]
    book = AlertBook(reraise_hold_s=target.settings.reraise_hold_s)
    ctx = alert_context(rule, ref, metric)
    last: AlertChange | None = None
    for sig in ev.feed(ts, vals, cut):
        ch = book.set_level(ctx, sig.level, ts[sig.index], value=sig.value, limit=sig.limit)
        if ch is not None:
            last = ch
    return last
