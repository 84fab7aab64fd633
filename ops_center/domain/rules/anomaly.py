"""Anomaly: a reading far from the series' recent behaviour.

``ewma``: exponentially weighted mean and variance, O(1) per reading.
``robust_z``: median and MAD (×1.4826) of the last ``window`` readings before the batch, in a
numpy ring buffer; the whole batch is scored at once. Off by default where the signal is
noisy (``defaults.yaml`` enables it only for a few kinds, at severity info).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field

from ops_center.domain.alerts import Severity, severity_rank
from ops_center.domain.rules.base import RuleBase, Signal, Target
from ops_center.domain.rules.levels import LevelMap, Machine, run_levels

_MAD_TO_SIGMA = 1.4826


class AnomalyRule(RuleBase):
    kind: Literal["anomaly"]
    method: Literal["ewma", "robust_z"] = "ewma"
    z: float = Field(default=6.0, gt=0)
    clear_z: float = Field(default=3.0, ge=0)
    alpha: float = Field(default=0.05, gt=0, lt=1)
    window: int = Field(default=120, ge=8, le=100_000)
    min_history: int = Field(default=30, ge=2)
    # Smallest spread (in the metric's unit) a z-score is divided by, so a flat series does
    # not turn every tiny change into an anomaly.
    min_scale: float = Field(default=1e-9, gt=0)
    severity: Severity = "info"
    raise_after_s: float = Field(default=0.0, ge=0)
    clear_after_s: float = Field(default=0.0, ge=0)


class _Base:
    __slots__ = ("lmap", "machine", "rule")

    def __init__(self, rule: AnomalyRule) -> None:
        self.rule = rule
        self.machine = Machine()
        self.lmap = LevelMap([(rule.z, severity_rank(rule.severity))], [],
                             max(rule.z - rule.clear_z, 0.0), strict=True)

    def _levels(self, ts: list[float], z: list[float], hold: list[bool] | None) -> list[Signal]:
        r = self.rule
        return run_levels(self.machine, self.lmap, ts, z, r.raise_after_s, r.clear_after_s, hold=hold)


class EwmaEvaluator(_Base):
    __slots__ = ("_mean", "_n", "_var")

    def __init__(self, rule: AnomalyRule) -> None:
        super().__init__(rule)
        self._mean = 0.0
        self._var = 0.0
        self._n = 0

    def feed(self, ts: list[float], vals: list[float], sent_s: float) -> list[Signal]:
        a = self.rule.alpha
        need = self.rule.min_history
        floor = self.rule.min_scale
        z: list[float] = []
        hold: list[bool] = []
        mean, var, n = self._mean, self._var, self._n
        for v in vals:
            if n == 0:
                mean = v
            z.append(abs(v - mean) / max(math.sqrt(var), floor))
            hold.append(n < need)
            diff = v - mean
            mean += a * diff
            var = (1.0 - a) * (var + a * diff * diff)
            n += 1
        self._mean, self._var, self._n = mean, var, n
        signals = self._levels(ts, z, hold if any(hold) else None)
        return [Signal(s.index, s.level, vals[s.index], s.value) for s in signals]

    def state(self) -> Any:
        return {"m": self.machine.state(), "s": [self._mean, self._var, self._n]}

    def load(self, state: Any) -> None:
        self.machine.load(state["m"])
        self._mean, self._var, self._n = state["s"]


class RobustZEvaluator(_Base):
    __slots__ = ("_buf", "_filled", "_pos")

    def __init__(self, rule: AnomalyRule) -> None:
        super().__init__(rule)
        self._buf: npt.NDArray[np.float64] = np.zeros(rule.window, dtype=np.float64)
        self._pos = 0
        self._filled = 0

    def feed(self, ts: list[float], vals: list[float], sent_s: float) -> list[Signal]:
        x = np.asarray(vals, dtype=np.float64)
        if self._filled >= self.rule.min_history:
            hist = self._buf[: self._filled]
            med = float(np.median(hist))
            scale = max(float(np.median(np.abs(hist - med))) * _MAD_TO_SIGMA, self.rule.min_scale)
            z = (np.abs(x - med) / scale).tolist()
            hold = None
        else:
            z = [0.0] * len(vals)
            hold = [True] * len(vals)
        self._push(x)
        signals = self._levels(ts, z, hold)
        return [Signal(s.index, s.level, vals[s.index], s.value) for s in signals]

    def _push(self, x: npt.NDArray[np.float64]) -> None:
        size = self._buf.shape[0]
        if x.shape[0] >= size:
            self._buf[:] = x[-size:]
            self._pos, self._filled = 0, size
            return
        end = self._pos + x.shape[0]
        if end <= size:
            self._buf[self._pos:end] = x
        else:
            first = size - self._pos
            self._buf[self._pos:] = x[:first]
            self._buf[: end - size] = x[first:]
        self._pos = end % size
        self._filled = min(size, self._filled + x.shape[0])

    def state(self) -> Any:
        full = self._filled == self._buf.shape[0]
        order = np.roll(self._buf, -self._pos) if full else self._buf[: self._filled]
        return {"m": self.machine.state(), "b": order.tolist()}

    def load(self, state: Any) -> None:
        self.machine.load(state["m"])
        self._buf[:] = 0.0
        self._pos = self._filled = 0
        if state["b"]:
            self._push(np.asarray(state["b"], dtype=np.float64))


def build(rule: AnomalyRule, target: Target) -> EwmaEvaluator | RobustZEvaluator:
    return EwmaEvaluator(rule) if rule.method == "ewma" else RobustZEvaluator(rule)
