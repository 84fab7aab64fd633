"""What a device driver's own threads hand to the agent: readings and failed reads.

Modbus lines and the LoRaWAN subscription read on their own threads; the agent collects on
its thread with ``poll`` and ``take_errors`` (the :class:`~edge.drivers.base.ErrorSource`
port). The inbox is bounded (docs/reliability.md, promise 5): past ``max_readings`` the oldest
readings are dropped and each drop is counted as a driver error. The agent collects every
second, so the bound is only reached when the agent is stuck.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from contract.models import Reading

MAX_READINGS = 100_000


class DriverInbox:
    def __init__(self, max_readings: int = MAX_READINGS) -> None:
        self._lock = threading.Lock()
        self._pending: list[Reading] = []
        self._errors = 0
        self._max = max_readings

    def put(self, readings: Iterable[Reading] = (), *, errors: int = 0) -> None:
        with self._lock:
            self._errors += errors
            self._pending.extend(readings)
            over = len(self._pending) - self._max
            if over > 0:
                del self._pending[:over]
                self._errors += over

    def poll(self) -> list[Reading]:
        with self._lock:
            out, self._pending = self._pending, []
        return out

    def take_errors(self) -> int:
        with self._lock:
            n, self._errors = self._errors, 0
        return n
