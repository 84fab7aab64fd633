"""Rate of change: the rise (or fall) within a sliding time window, e.g. street water
rising more than 5 cm in 10 min (docs/domain-facts.md §3.3, an engineering estimate).

The rise at a reading is its value minus the lowest value of the window ending at it (a
monotonic deque keeps that minimum in O(1) amortised per reading).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Literal

from pydantic import Field

from ops_center.domain.rules.base import Level, LeveledRule, Signal, Target, ranks
from ops_center.domain.rules.levels import LevelMap, Machine, run_levels


class RateRule(LeveledRule):
    kind: Literal["rate"]
    direction: Literal["rising", "falling"] = "rising"
    window_s: float = Field(gt=0)
    levels: tuple[Level, ...] = Field(min_length=1)  # thresholds on the change, in the metric's unit
    strict: bool = True


class RateEvaluator:
    __slots__ = ("_sign", "_window", "lmap", "machine", "rule")

    def __init__(self, rule: RateRule) -> None:
        self.rule = rule
        self.lmap = LevelMap(ranks(rule.levels), [], rule.hysteresis, strict=rule.strict)
        self.machine = Machine()
        self._sign = 1.0 if rule.direction == "rising" else -1.0
        # (t, sign * v) with increasing values: the front is the window's minimum.
        self._window: deque[tuple[float, float]] = deque()

    def feed(self, ts: list[float], vals: list[float], sent_s: float) -> list[Signal]:
        w = self._window
        span = self.rule.window_s
        sign = self._sign
        changes: list[float] = []
        for t, v in zip(ts, vals, strict=True):
            x = sign * v
            while w and w[-1][1] >= x:
                w.pop()
            w.append((t, x))
            horizon = t - span
            while w[0][0] < horizon:
                w.popleft()
            changes.append(x - w[0][1])
        r = self.rule
        return run_levels(self.machine, self.lmap, ts, changes, r.raise_after_s, r.clear_after_s,
                          raise_after_n=r.raise_after_readings)

    def state(self) -> Any:
        return {"m": self.machine.state(), "w": [list(p) for p in self._window]}

    def load(self, state: Any) -> None:
        self.machine.load(state["m"])
        self._window = deque((float(t), float(x)) for t, x in state["w"])


def build(rule: RateRule, target: Target) -> RateEvaluator:
    return RateEvaluator(rule)
