"""Severity levels over values and the hysteresis machine that raises and lowers them in
reading time, shared by every leveled rule kind.

Levels are severity ranks: 0 = clear, 1 info, 2 warning, 3 critical, 4 emergency.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from typing import Any

from ops_center.domain.rules.base import Signal


class LevelMap:
    """Maps a value to (up, down) severity ranks.

    ``up``: the highest level whose threshold the value reaches (raise condition).
    ``down``: the same with thresholds moved by the hysteresis (the value must fall below
    ``down`` of the current level to lower or clear it).
    Thresholds above: reached when v ≥ at (v > at when ``strict``). Below: v ≤ at (v < at).
    """

    __slots__ = ("_above", "_above_down", "_below", "_below_down", "_rank_a", "_rank_b",
                 "first_above", "first_below", "strict")

    def __init__(self, above: Sequence[tuple[float, int]], below: Sequence[tuple[float, int]],
                 hysteresis: float = 0.0, *, strict: bool = False) -> None:
        a = sorted(above)
        b = sorted(((-at, rank) for at, rank in below))  # below thresholds negated, ascending
        self._above = [at for at, _ in a]
        self._above_down = [at - hysteresis for at, _ in a]
        self._rank_a = [0, *_cummax([r for _, r in a])]
        self._below = [at for at, _ in b]
        self._below_down = [at - hysteresis for at, _ in b]
        self._rank_b = [0, *_cummax([r for _, r in b])]
        self.strict = strict
        self.first_above = self._above[0] if a else float("inf")
        self.first_below = -self._below[0] if b else float("-inf")

    def _count(self, thresholds: list[float], v: float) -> int:
        return bisect_left(thresholds, v) if self.strict else bisect_right(thresholds, v)

    def up(self, v: float) -> int:
        return max(self._rank_a[self._count(self._above, v)], self._rank_b[self._count(self._below, -v)])

    def down(self, v: float) -> int:
        return max(self._rank_a[self._count(self._above_down, v)],
                   self._rank_b[self._count(self._below_down, -v)])

    def quiet(self, vmin: float, vmax: float) -> bool:
        """True when no value in [vmin, vmax] reaches any threshold (the common case)."""
        if self.strict:
            return vmax <= self.first_above and vmin >= self.first_below
        return vmax < self.first_above and vmin > self.first_below

    def limit_for(self, rank: int, v: float) -> float | None:
        """The threshold of level ``rank`` (at least) on the side ``v`` is on, for messages."""
        rank = max(rank, 1)
        # Band rules (pH): the side whose first threshold is nearer.
        use_above = bool(self._above) and (
            not self._below or v - self.first_below > (self.first_above - self.first_below) / 2)
        if use_above:
            for i, at in enumerate(self._above):
                if self._rank_a[i + 1] >= rank:
                    return at
            return self._above[-1]
        for i, at in enumerate(self._below):
            if self._rank_b[i + 1] >= rank:
                return -at
        return -self._below[-1] if self._below else None


def _cummax(xs: list[int]) -> list[int]:
    out: list[int] = []
    m = 0
    for x in xs:
        m = max(m, x)
        out.append(m)
    return out


class Machine:
    """Raise at level ≥ X held for ``raise_after_s`` and over at least ``raise_after_n``
    consecutive readings; lower/clear when below the hysteresis threshold for
    ``clear_after_s`` (reading time). A raise goes to the lowest level seen during the
    pending period, a lowering to the highest, so durations hold per level.

    A count of readings says "the Nth consecutive reading over the limit" whatever the
    sensor's reporting interval and its jitter (a hold of exactly one interval in seconds
    would wait a third reading whenever the second came a millisecond early)."""

    __slots__ = ("down_since", "down_target", "level", "pending_n", "since", "target")

    def __init__(self) -> None:
        self.level = 0
        self.since: float | None = None
        self.target = 0
        self.down_since: float | None = None
        self.down_target = 0
        self.pending_n = 0

    def step(self, ts: Sequence[float], up: Sequence[int], down: Sequence[int],
             raise_after_s: float, clear_after_s: float, raise_after_n: int = 1) -> list[tuple[int, int]]:
        """Feed one batch; returns (index of the reading, new level) transitions."""
        out: list[tuple[int, int]] = []
        level = self.level
        for i in range(len(ts)):
            t = ts[i]
            u = up[i]
            if u > level:
                if self.since is None:
                    self.since, self.target, self.pending_n = t, u, 1
                else:
                    self.pending_n += 1
                    self.target = min(self.target, u)
                self.down_since = None
                if t - self.since >= raise_after_s and self.pending_n >= raise_after_n:
                    level = self.target
                    out.append((i, level))
                    self.since = None
                continue
            self.since = None
            d = down[i]
            if d < level:
                if self.down_since is None:
                    self.down_since, self.down_target = t, d
                elif d > self.down_target:
                    self.down_target = d
                if t - self.down_since >= clear_after_s:
                    level = self.down_target
                    out.append((i, level))
                    self.down_since = None
            else:
                self.down_since = None
        self.level = level
        return out

    def reset_pending(self) -> None:
        self.since = None
        self.down_since = None

    def state(self) -> list[Any]:
        return [self.level, self.since, self.target, self.down_since, self.down_target, self.pending_n]

    def load(self, s: Sequence[Any]) -> None:
        # Snapshots written before the reading count have five fields.
        self.level, self.since, self.target, self.down_since, self.down_target = s[:5]
        self.pending_n = int(s[5]) if len(s) > 5 else (1 if self.since is not None else 0)


def run_levels(machine: Machine, lmap: LevelMap, ts: Sequence[float], vals: Sequence[float],
               raise_after_s: float, clear_after_s: float, *,
               off: Sequence[bool] | None = None, hold: Sequence[bool] | None = None,
               raise_after_n: int = 1) -> list[Signal]:
    """Feed derived values through a level map and a machine.

    ``off[i]``: the condition does not apply to reading i (e.g. outside the rule's hours):
    it counts as clear. ``hold[i]``: no evidence either way (e.g. too little data in the
    window): it neither raises nor lowers.
    """
    if not vals:
        return []
    if machine.level == 0 and hold is None and lmap.quiet(min(vals), max(vals)):
        machine.since = None
        return []
    up = [lmap.up(v) for v in vals]
    down = [lmap.down(v) for v in vals]
    if off is not None:
        for i, is_off in enumerate(off):
            if is_off:
                up[i] = down[i] = 0
    if hold is not None:
        for i, is_held in enumerate(hold):
            if is_held:
                up[i] = 0
                down[i] = _NO_LOWERING
    out: list[Signal] = []
    for i, level in machine.step(ts, up, down, raise_after_s, clear_after_s, raise_after_n):
        v = vals[i]
        out.append(Signal(i, level, v, lmap.limit_for(level, v)))
    return out


_NO_LOWERING = 1_000
