"""The limits a sensor's readings are judged against, for the screen's charts: the rules the
ops service runs (bundled defaults plus ``SMARTWARD_OPS_RULES`` overlays, overrides merged
for the sensor), reduced to lines a chart can draw — a threshold's first level, a rolling
mean's first level with its window (QCVN 05:2023 1 h / 24 h...), a noise zone's day and
night limits (QCVN 26). Rules without a fixed line (rates, anomalies, regulatory formulas
with Kq/Kf) are left out."""

from __future__ import annotations

import os
import threading
from datetime import date
from pathlib import Path

from contract.registry import Registry, SensorRef
from ops_center.api.errors import Localized
from ops_center.api.schemas.common import OutModel
from ops_center.domain.rules import RuleSet
from ops_center.domain.rules.base import RuleBase
from ops_center.domain.rules.laeq import LaeqHourlyRule
from ops_center.domain.rules.rolling_mean import RollingMeanRule
from ops_center.domain.rules.threshold import ThresholdRule
from ops_center.rulebook.loader import load_rules


class LimitOut(OutModel):
    metric: str
    rule: str
    title: Localized
    value: float
    direction: str  # above | below
    window_s: float | None  # a mean over this window is compared (None: each reading)
    when: str | None  # "day" / "night" for a noise zone's limits


_lock = threading.Lock()
_rules: dict[int, RuleSet] = {}


def rules_for(registry: Registry) -> RuleSet:
    with _lock:
        hit = _rules.get(id(registry))
        if hit is None:
            overlays = [
                Path(p.strip()) for p in os.environ.get("SMARTWARD_OPS_RULES", "").split(",") if p.strip()
            ]
            hit = _rules[id(registry)] = load_rules(overlays, registry=registry)
        return hit


def limits_of(rules: RuleSet, ref: SensorRef, today: date) -> list[LimitOut]:
    """``today``: the Vietnam date, for limits that tighten on a known day (QCVN 05:2023 PM2.5)."""
    out: list[LimitOut] = []
    for rule in rules.resolve(ref):
        for metric in rule.metrics or ref.spec.metrics:
            if metric in ref.spec.metrics:
                out.extend(_lines(rule, metric, ref, today))
    return out


def _lines(rule: RuleBase, metric: str, ref: SensorRef, today: date) -> list[LimitOut]:
    title = Localized(vi=rule.title.vi, en=rule.title.en)
    if isinstance(rule, ThresholdRule):
        scale = 1.0
        if rule.scale_attr is not None:
            raw = ref.spec.attrs.get(rule.scale_attr)
            if not isinstance(raw, int | float) or isinstance(raw, bool):
                return []
            scale = float(raw)
        return [
            LimitOut(
                metric=metric,
                rule=rule.id,
                title=title,
                value=rule.levels[0].at * scale,
                direction=rule.direction,
                window_s=None,
                when=None,
            )
        ]
    if isinstance(rule, RollingMeanRule):
        levels = rule.levels
        for step in sorted(rule.schedule, key=lambda x: x.since):
            if step.since <= today:
                levels = step.levels
        return [
            LimitOut(
                metric=metric,
                rule=rule.id,
                title=title,
                value=levels[0].at,
                direction="above",
                window_s=rule.window_s,
                when=None,
            )
        ]
    if isinstance(rule, LaeqHourlyRule):
        zone = ref.spec.attrs.get(rule.zone_attr, rule.default_zone)
        limits = rule.limits.get(str(zone)) if zone is not None else None
        if limits is None:
            return []
        return [
            LimitOut(
                metric=metric,
                rule=rule.id,
                title=title,
                value=limits.day,
                direction="above",
                window_s=3600.0,
                when="day",
            ),
            LimitOut(
                metric=metric,
                rule=rule.id,
                title=title,
                value=limits.night,
                direction="above",
                window_s=3600.0,
                when="night",
            ),
        ]
    return []
