"""Data-quality rules: stuck values, values outside the instrument's physical bounds (from
the metric catalog), and reading timestamps ahead of their batch's ``sent_at`` (clock skew).

These raise alerts of category ``data_quality`` (an instrument or clock fault), never a
pollution alert: out-of-bounds and skewed readings are withheld from the value rules.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field

from contract.catalog import METRICS
from ops_center.domain.alerts import Severity, severity_rank
from ops_center.domain.rules.base import RuleBase, Signal, Target


class StuckRule(RuleBase):
    """A value repeated exactly (within ``tolerance``) for too long.

    "Too long" is learnt per series: the evaluator counts how often the series repeats its
    previous value on its own (instruments and rounding make short plateaus: a 1-minute
    PM2.5 at 0.01 resolution repeats about one reading in 200-300, so runs of 3 equal
    readings happen weekly in a fleet). Once it has ``min_history`` readings, a run of n
    equal readings raises as soon as its chance on that repeat rate, p^(n-1), falls below
    ``max_chance`` (and n ≥ ``min_fast_count``): a lively PM2.5 series is flagged at its 4th
    equal reading (a hung instrument repeats its last good reading, so that is the 3rd wrong
    one), a coarse one only after many. Before that, and as a backstop, the fixed
    ``min_count`` readings over ``min_duration_s`` apply.

    Scaling p by how much the series moves right now (a quiet night repeats more often) was
    tried on a simulated year of the demo fleet and did not pay: at the same false-alarm rate
    it caught fewer freezes within 2 reporting intervals (noise in the short-window
    estimate).
    """

    kind: Literal["stuck"]
    min_count: int = Field(default=30, ge=2)
    min_duration_s: float = Field(default=1800.0, ge=0)
    tolerance: float = Field(default=0.0, ge=0)
    # A series sitting at exactly 0 is usually a stopped process, not a stuck instrument.
    ignore_zero: bool = True
    severity: Severity = "warning"
    # Learnt repeat rate: 0 disables it (fixed count and duration only).
    max_chance: float = Field(default=3e-7, ge=0, lt=1)
    min_fast_count: int = Field(default=3, ge=2)
    min_history: int = Field(default=500, ge=10)
    history: int = Field(default=5000, ge=100)   # readings the repeat rate is learnt over


class BoundsRule(RuleBase):
    kind: Literal["out_of_bounds"]
    severity: Severity = "warning"
    clear_after_count: int = Field(default=3, ge=1)


class ClockSkewRule(RuleBase):
    kind: Literal["clock_skew"]
    max_ahead_s: float = Field(default=120.0, ge=0)
    severity: Severity = "info"
    clear_after_count: int = Field(default=3, ge=1)


class StuckEvaluator:
    __slots__ = ("_count", "_need", "_pairs", "_rank", "_repeats", "_start", "_value", "active", "rule")

    def __init__(self, rule: StuckRule) -> None:
        self.rule = rule
        self._rank = severity_rank(rule.severity)
        self._value: float | None = None
        self._start = 0.0
        self._count = 0
        self.active = False
        # The series' own repeat statistics (runs that ended: a stuck run is not learnt
        # from while it lasts).
        self._pairs = 0.0
        self._repeats = 0.0
        self._need = rule.min_count

    def _learn(self, run: int) -> None:
        """A run of ``run`` equal readings ended: ``run`` transitions, ``run - 1`` repeats."""
        r = self.rule
        self._pairs += run
        self._repeats += run - 1
        if self._pairs > r.history:  # forget slowly: the rate follows the season and the site
            k = r.history / self._pairs
            self._pairs *= k
            self._repeats *= k
        # The needed run length changes slowly: recompute it on repeats and every 64 readings,
        # not on every reading of a lively series (the engine's per-reading path).
        if run > 1 or int(self._pairs) % 64 == 0 or self._need >= r.min_count:
            self._update_need()

    def _update_need(self) -> None:
        r = self.rule
        need = r.min_count
        if r.max_chance > 0 and self._pairs >= r.min_history:
            p = (self._repeats + 1.0) / (self._pairs + 2.0)  # Laplace: never 0
            need = min(need, max(r.min_fast_count, 1 + math.ceil(math.log(r.max_chance) / math.log(p))))
        self._need = need

    def feed(self, ts: list[float], vals: list[float], sent_s: float) -> list[Signal]:
        r = self.rule
        tol = r.tolerance
        out: list[Signal] = []
        value, start, count, active = self._value, self._start, self._count, self.active
        for i, (t, v) in enumerate(zip(ts, vals, strict=True)):
            if value is not None and abs(v - value) <= tol:
                count += 1
                if (not active and (count >= self._need if self._need < r.min_count
                                    else count >= r.min_count and t - start >= r.min_duration_s)
                        and not (r.ignore_zero and value == 0)):
                    active = True
                    out.append(Signal(i, self._rank, v, value))
            else:
                if active:
                    active = False
                    out.append(Signal(i, 0, v, value))
                elif count:
                    self._learn(count)
                value, start, count = v, t, 1
        self._value, self._start, self._count, self.active = value, start, count, active
        return out

    def state(self) -> Any:
        return [self._value, self._start, self._count, self.active, self._pairs, self._repeats]

    def load(self, state: Any) -> None:
        self._value, self._start, self._count, self.active = state[:4]
        if len(state) > 4:  # older snapshots have no repeat statistics
            self._pairs, self._repeats = float(state[4]), float(state[5])
            self._update_need()


class _FlagEvaluator:
    """Raise on the first flagged reading, clear after N good ones in a row. ``mask`` keeps
    the verdict per reading of the last batch (None: every reading was fine)."""

    __slots__ = ("_clear_after", "_good", "_rank", "active", "mask", "rule")

    def __init__(self, rule: BoundsRule | ClockSkewRule) -> None:
        self.rule = rule
        self._rank = severity_rank(rule.severity)
        self._clear_after = rule.clear_after_count
        self.active = False
        self._good = 0
        self.mask: list[bool] | None = None

    def _run(self, bad: list[bool], vals: list[float], limits: list[float]) -> list[Signal]:
        out: list[Signal] = []
        for i, is_bad in enumerate(bad):
            if is_bad:
                self._good = 0
                if not self.active:
                    self.active = True
                    out.append(Signal(i, self._rank, vals[i], limits[i]))
            elif self.active:
                self._good += 1
                if self._good >= self._clear_after:
                    self.active = False
                    out.append(Signal(i, 0, vals[i], limits[i]))
        return out

    def state(self) -> Any:
        return [self.active, self._good]

    def load(self, state: Any) -> None:
        self.active, self._good = state


class BoundsEvaluator(_FlagEvaluator):
    __slots__ = ("hi", "lo")

    def __init__(self, rule: BoundsRule, lo: float, hi: float) -> None:
        super().__init__(rule)
        self.lo, self.hi = lo, hi

    def feed(self, ts: list[float], vals: list[float], sent_s: float) -> list[Signal]:
        lo, hi = self.lo, self.hi
        if not self.active and min(vals) >= lo and max(vals) <= hi:
            self.mask = None
            return []
        bad = [not (lo <= v <= hi) for v in vals]
        self.mask = bad if any(bad) else None
        return self._run(bad, vals, [hi if v > hi else lo for v in vals])


class ClockSkewEvaluator(_FlagEvaluator):
    __slots__ = ("max_ahead",)

    def __init__(self, rule: ClockSkewRule) -> None:
        super().__init__(rule)
        self.max_ahead = rule.max_ahead_s

    def feed(self, ts: list[float], vals: list[float], sent_s: float) -> list[Signal]:
        """Here ``vals`` is ignored for the verdict; signals carry the skew in seconds."""
        horizon = sent_s + self.max_ahead
        if not self.active and max(ts) <= horizon:
            self.mask = None
            return []
        bad = [t > horizon for t in ts]
        self.mask = bad if any(bad) else None
        return self._run(bad, [t - sent_s for t in ts], [self.max_ahead] * len(ts))


def build_stuck(rule: StuckRule, target: Target) -> StuckEvaluator:
    return StuckEvaluator(rule)


def build_bounds(rule: BoundsRule, target: Target) -> BoundsEvaluator:
    m = METRICS[target.metric]
    return BoundsEvaluator(rule, m.min, m.max)


def build_skew(rule: ClockSkewRule, target: Target) -> ClockSkewEvaluator:
    return ClockSkewEvaluator(rule)
