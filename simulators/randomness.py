"""Seeded randomness: stable per-sensor streams, hashed per-day draws, AR(1) noise.

Two kinds of randomness, on purpose:

* **Streams** (:func:`stream`): one ``random.Random`` per sensor, seeded from the fleet seed
  and the sensor id, stepped once per reading. Measurement noise and short-term
  fluctuation come from here, so the same seed gives the same readings and another seed
  different ones. ``random.Random`` rather than numpy: the models draw one scalar at a
  time inside a sequential state machine, where numpy's per-call overhead dominates.
* **Hashes** (:func:`hash_unit`, :func:`hash_normal`): a pure function of their arguments,
  for draws that must not depend on how far a stream has been stepped, e.g. the daily
  PM level of a site on a given date, or a bin's daily fill, which scenario ground truth
  recomputes without running the fleet.

Python's ``hash()`` is salted per process for strings, so seeds go through BLAKE2b.
"""

from __future__ import annotations

import hashlib
import math
import random
from functools import lru_cache


def derive_seed(*parts: object) -> int:
    """A 64-bit seed that depends only on ``parts`` (their ``str``), stable across runs."""
    h = hashlib.blake2b("\x1f".join(str(p) for p in parts).encode(), digest_size=8)
    return int.from_bytes(h.digest(), "big")


def stream(*parts: object) -> random.Random:
    return random.Random(derive_seed(*parts))


def hash_unit(*parts: object) -> float:
    """Uniform in [0, 1), a pure function of ``parts``."""
    return derive_seed(*parts) / 2**64


@lru_cache(maxsize=65_536)  # per-day draws are asked for at every step of that day
def hash_normal(*parts: object) -> float:
    """Standard normal, a pure function of ``parts`` (Box–Muller on two hashed uniforms)."""
    u1 = 1.0 - hash_unit(*parts, "u1")  # (0, 1]: log stays finite
    u2 = hash_unit(*parts, "u2")
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


class Ar1:
    """Zero-mean first-order autoregressive noise with stationary deviation ``sigma``.

    Parametrised by a correlation time ``tau_s`` rather than a per-step coefficient so the
    statistics are the same whatever the sensor's reporting interval:
    x ← φ·x + √(1−φ²)·σ·ε with φ = exp(−Δt/τ).
    """

    __slots__ = ("_cache", "_rng", "sigma", "tau_s", "x")

    def __init__(self, rng: random.Random, sigma: float, tau_s: float) -> None:
        self._rng = rng
        self.sigma = sigma
        self.tau_s = tau_s
        self._cache: tuple[float, float, float] = (-1.0, 0.0, 0.0)
        self.x = rng.gauss(0.0, sigma)  # start in the stationary distribution: no warm-up

    def step(self, dt_s: float) -> float:
        cached_dt, phi, scale = self._cache
        if dt_s != cached_dt:
            phi = math.exp(-max(dt_s, 0.0) / self.tau_s)
            scale = math.sqrt(1.0 - phi * phi) * self.sigma
            self._cache = (dt_s, phi, scale)
        self.x = phi * self.x + scale * self._rng.gauss(0.0, 1.0)
        return self.x
