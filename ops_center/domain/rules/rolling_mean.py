"""Windowed mean against a limit, e.g. the rolling 24-hour mean of PM2.5 against QCVN
05:2023 (50 µg/m³, 45 from 2026-01-01). QCVN 05 has no 1-hour PM limit (docs/domain-facts.md §2.1): the
alert is a *rolling proxy* of the 24 h limit, and its title says so.

A running sum over a deque keeps each reading O(1); the sum is recomputed now and then to
keep floating-point drift away. With too little data in the window (``min_coverage`` of
the readings the sensor's ``interval_s`` promises) the rule neither raises nor clears.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import deque
from datetime import date, datetime, timedelta, timezone
from typing import Any, Literal

from pydantic import Field

from ops_center.domain.rules.base import Level, LeveledRule, Signal, Strict, Target, ranks
from ops_center.domain.rules.levels import LevelMap, Machine, run_levels

_RESUM_EVERY = 4096


class ScheduledLevels(Strict):
    """Levels that apply from a local date on (a limit that tightens on a known day)."""

    since: date
    levels: tuple[Level, ...] = Field(min_length=1)


class RollingMeanRule(LeveledRule):
    kind: Literal["rolling_mean"]
    window_s: float = Field(gt=0)
    levels: tuple[Level, ...] = Field(min_length=1)
    schedule: tuple[ScheduledLevels, ...] = ()
    min_coverage: float = Field(default=0.75, gt=0, le=1)


class RollingMeanEvaluator:
    __slots__ = ("_buf", "_evictions", "_expected", "_lowest", "_maps", "_sum", "_switches", "machine",
                 "rule")

    def __init__(self, rule: RollingMeanRule, maps: list[LevelMap], switches: list[float],
                 expected: float) -> None:
        self.rule = rule
        self.machine = Machine()
        self._maps = maps
        self._switches = switches   # epoch seconds where maps[i + 1] starts
        self._expected = expected   # readings expected in a full window
        self._buf: deque[tuple[float, float]] = deque()
        self._sum = 0.0
        self._evictions = 0
        self._lowest = min(mp.first_above for mp in maps)  # no regime's threshold is below this

    def feed(self, ts: list[float], vals: list[float], sent_s: float) -> list[Signal]:
        buf = self._buf
        span = self.rule.window_s
        need = self.rule.min_coverage * self._expected
        means: list[float] = []
        hold: list[bool] = []
        s = self._sum
        for t, v in zip(ts, vals, strict=True):
            buf.append((t, v))
            s += v
            horizon = t - span
            while buf[0][0] <= horizon:
                s -= buf.popleft()[1]
                self._evictions += 1
            n = len(buf)
            means.append(s / n)
            hold.append(n < need)
        if self._evictions >= _RESUM_EVERY:
            s = math.fsum(x for _, x in buf)
            self._evictions = 0
        self._sum = s
        r = self.rule
        held = hold if any(hold) else None
        m = self.machine
        if held is None and m.level == 0 and m.since is None and max(means) < self._lowest:
            return []
        if not self._switches or ts[-1] < self._switches[0]:
            return run_levels(self.machine, self._maps[0], ts, means, r.raise_after_s, r.clear_after_s,
                              hold=held)
        out: list[Signal] = []
        start = 0
        while start < len(ts):
            regime = bisect_right(self._switches, ts[start])
            end = start
            while end < len(ts) and bisect_right(self._switches, ts[end]) == regime:
                end += 1
            part = run_levels(self.machine, self._maps[regime], ts[start:end], means[start:end],
                              r.raise_after_s, r.clear_after_s,
                              hold=None if held is None else held[start:end])
            out.extend(Signal(sig.index + start, sig.level, sig.value, sig.limit) for sig in part)
            start = end
        return out

    def state(self) -> Any:
        return {"m": self.machine.state(), "b": [list(p) for p in self._buf]}

    def load(self, state: Any) -> None:
        self.machine.load(state["m"])
        self._buf = deque((float(t), float(v)) for t, v in state["b"])
        self._sum = math.fsum(v for _, v in self._buf)
        self._evictions = 0


def local_midnight(day: date, utc_offset_h: float) -> float:
    tz = timezone(timedelta(hours=utc_offset_h))
    return datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()


def build(rule: RollingMeanRule, target: Target) -> RollingMeanEvaluator:
    hyst = rule.hysteresis
    maps = [LevelMap(ranks(rule.levels), [], hyst, strict=rule.strict)]
    switches: list[float] = []
    for sched in sorted(rule.schedule, key=lambda s: s.since):
        switches.append(local_midnight(sched.since, target.settings.utc_offset_h))
        maps.append(LevelMap(ranks(sched.levels), [], hyst, strict=rule.strict))
    expected = rule.window_s / target.ref.spec.interval_s
    return RollingMeanEvaluator(rule, maps, switches, expected)
