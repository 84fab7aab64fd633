"""Threshold with hysteresis and minimum durations, above or below, with severity levels.

Raise at ≥ X held for ``raise_after_s``; lower or clear when below X − hysteresis for
``clear_after_s`` (mirrored for ``direction: below``). ``scale_attr`` multiplies every
threshold by a sensor attribute (lamp power as a fraction of ``rated_w``); ``hours``
limits the rule to a local time-of-day window, ``dark`` to the hours between the sensor's
own sunset and sunrise (a lamp is expected on only then; the sun moves the switch-on time
by an hour over the year, so a fixed window either judges lamps before they are due or
misses the first hour of the night). Outside its window the condition counts as clear.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from contract.solar import DarkHours
from ops_center.domain.rules.base import (
    DarkWindow,
    Hours,
    Level,
    LeveledRule,
    LocalTime,
    Signal,
    Target,
    attr_float,
    in_window,
    ranks,
)
from ops_center.domain.rules.levels import LevelMap, Machine, run_levels


class ThresholdRule(LeveledRule):
    kind: Literal["threshold"]
    direction: Literal["above", "below"] = "above"
    levels: tuple[Level, ...] = Field(min_length=1)
    scale_attr: str | None = None
    hours: Hours | None = None
    dark: DarkWindow | None = None

    @model_validator(mode="after")
    def _one_window(self) -> ThresholdRule:
        if self.hours is not None and self.dark is not None:
            raise ValueError("give either hours or dark, not both")
        return self


class ThresholdEvaluator:
    __slots__ = ("_clock", "_dark", "_hours", "lmap", "machine", "rule")

    def __init__(self, rule: ThresholdRule, lmap: LevelMap, clock: LocalTime,
                 dark: DarkHours | None = None) -> None:
        self.rule = rule
        self.lmap = lmap
        self.machine = Machine()
        self._clock = clock
        self._hours = rule.hours.minutes() if rule.hours is not None else None
        self._dark = dark

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
        elif self._dark is not None:
            is_dark = self._dark.dark
            off = [not is_dark(t) for t in ts]
        if off is not None:
            if all(off) and m.level == 0:
                # Outside the rule's hours with nothing raised: the common case for the lamp
                # rules (a lamp lit at night for the day-burning rule, dark by day for lamp-out).
                m.since = None
                return []
            if not any(off):
                off = None
        return run_levels(self.machine, self.lmap, ts, vals, r.raise_after_s, r.clear_after_s, off=off,
                          raise_after_n=r.raise_after_readings)

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
    dark: DarkHours | None = None
    if rule.dark is not None:
        if target.lat is None or target.lon is None:
            return None  # no position, no sunset: the rule cannot know when the lamp is due on
        dark = DarkHours(target.lat, target.lon, after_sunset_s=rule.dark.after_sunset_s,
                         before_sunrise_s=rule.dark.before_sunrise_s,
                         utc_offset_h=target.settings.utc_offset_h)
    return ThresholdEvaluator(rule, lmap, LocalTime(target.settings.utc_offset_h), dark)
