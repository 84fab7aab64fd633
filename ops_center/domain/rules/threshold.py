"""Threshold with hysteresis and minimum durations, above or below, with severity levels.

Raise at ≥ X held for ``raise_after_s``; lower or clear when below X − hysteresis for
``clear_after_s`` (mirrored for ``direction: below``). ``scale_attr`` multiplies every
threshold by a sensor attribute (lamp power as a fraction of ``rated_w``); ``hours``
limits the rule to a local time-of-day window (a lamp is expected on only at night).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ops_center.domain.rules.base import (
    Hours,
    Level,
    LeveledRule,
    LevelMap,
    LocalTime,
    Machine,
    Signal,
    Target,
    attr_float,
    in_window,
    ranks,
    run_levels,
)


class ThresholdRule(LeveledRule):
    kind: Literal["threshold"]
    direction: Literal["above", "below"] = "above"
    levels: tuple[Level, ...] = Field(min_length=1)
    scale_attr: str | None = None
    hours: Hours | None = None


class ThresholdEvaluator:
    __slots__ = ("_clock", "_hours", "lmap", "machine", "rule")

    def __init__(self, rule: ThresholdRule, lmap: LevelMap, clock: LocalTime) -> None:
        self.rule = rule
        self.lmap = lmap
        self.machine = Machine()
        self._clock = clock
        self._hours = rule.hours.minutes() if rule.hours is not None else None

    def feed(self, ts: list[float], vals: list[float], sent_s: float) -> list[Signal]:
        m = self.machine
        if m.level == 0:  # fast path: nothing reaches a threshold (inlined LevelMap.quiet)
            lm = self.lmap
            hi, lo = max(vals), min(vals)
            if (hi <= lm.first_above and lo >= lm.first_below) if lm.strict else (
                    hi < lm.first_above and lo > lm.first_below):
                m.since = None
                return []
        r = self.rule
        off = None
        if self._hours is not None:
            mod, hours = self._clock.minute_of_day, self._hours
            off = [not in_window(mod(t), hours) for t in ts]
            if not any(off):
                off = None
        return run_levels(self.machine, self.lmap, ts, vals, r.raise_after_s, r.clear_after_s, off=off)

    def state(self) -> Any:
        return self.machine.state()

    def load(self, state: Any) -> None:
        self.machine.load(state)


def build(rule: ThresholdRule, target: Target) -> ThresholdEvaluator | None:
    scale = attr_float(target, rule.scale_attr)
    if scale is None:
        return None  # the sensor lacks the attribute the thresholds are scaled by
    levels = ranks(rule.levels, scale)
    above, below = (levels, []) if rule.direction == "above" else ([], levels)
    lmap = LevelMap(above, below, rule.hysteresis * scale, strict=rule.strict)
    return ThresholdEvaluator(rule, lmap, LocalTime(target.settings.utc_offset_h))
