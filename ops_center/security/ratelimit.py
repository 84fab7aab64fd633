"""Login rate limits (docs/reliability.md S8): attempts per client address, failures per user name.

Sliding windows of timestamps, bounded in keys and in entries per key, in process memory:
behind several API processes each one counts for itself (the limit multiplies by the
number of processes, which is still a hard bound on guessing).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable


class SlidingWindow:
    def __init__(
        self,
        limit: int,
        window_s: float,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_keys = max_keys
        self._clock = clock
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, key: str) -> int | None:
        """Seconds until ``key`` may try again, or None when it may now."""
        with self._lock:
            hits = self._trim(key)
            if hits is None or len(hits) < self.limit:
                return None
            return max(1, math.ceil(hits[0] + self.window_s - self._clock()))

    def hit(self, key: str) -> None:
        with self._lock:
            hits = self._trim(key)
            if hits is None:
                hits = self._hits[key] = deque(maxlen=self.limit)
                while len(self._hits) > self.max_keys:
                    self._hits.popitem(last=False)
            self._hits.move_to_end(key)
            hits.append(self._clock())

    def reset(self, key: str) -> None:
        with self._lock:
            self._hits.pop(key, None)

    def _trim(self, key: str) -> deque[float] | None:
        hits = self._hits.get(key)
        if hits is None:
            return None
        horizon = self._clock() - self.window_s
        while hits and hits[0] <= horizon:
            hits.popleft()
        if not hits:
            del self._hits[key]
            return None
        return hits


class LoginLimiter:
    def __init__(
        self,
        *,
        attempts_per_ip: int,
        failures_per_user: int,
        window_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.by_ip = SlidingWindow(attempts_per_ip, window_s, clock=clock)
        self.by_user = SlidingWindow(failures_per_user, window_s, clock=clock)

    def check(self, ip: str, user: str) -> int | None:
        """Retry-After seconds when this attempt must be refused, else None."""
        waits = [w for w in (self.by_ip.retry_after(ip), self.by_user.retry_after(user.lower())) if w]
        return max(waits) if waits else None

    def attempted(self, ip: str) -> None:
        self.by_ip.hit(ip)

    def failed(self, user: str) -> None:
        self.by_user.hit(user.lower())

    def succeeded(self, user: str) -> None:
        self.by_user.reset(user.lower())
