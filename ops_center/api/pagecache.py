"""Shared answers of list routes: the JSON body of one query, kept for ``ttl_s`` and shared by
every client that asks the same query in that time.

Two hundred operations screens polling their ward's incidents every second ask the same few
queries: answering each from the store cost a trip to the thread pool, two reads and the
JSON of fifty incidents per request (docs/performance.md, "Ops API"). Here each distinct
query runs at most once per ``ttl_s`` per process; the others get its bytes on the event
loop.

- **Scope**: the key is the query itself, with the site filter already narrowed to the
  caller's scope (``Scope.narrow``); the body is a function of the key alone. A ward's key
  names only its own sites, so another scope can never be handed its rows; two scopes that
  send the same query get the same, correct, answer.
- **Freshness**: an answer is never older than ``ttl_s`` (taken from when its query began),
  and none computed before the change feed's last event is served after it (``generation``,
  e.g. the feed's published count): an incident opened or acknowledged in this process is
  visible at once, one from elsewhere within ``ttl_s``. The live stream carries it at once
  anyway.
- **Single flight**: while a key is being computed, other requests for it wait for that
  computation instead of starting their own (no thundering herd at expiry).
- **Bounded**: at most ``max_entries`` keys, least recently used dropped first.

Belongs to one event loop (an API worker's); a request from another loop (a test client
with its own) computes for itself.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class _Entry:
    started: float  # monotonic time its computation began
    generation: int  # the feed's generation when it began
    body: bytes


class BodyCache(Generic[K]):
    def __init__(
        self,
        ttl_s: float,
        *,
        generation: Callable[[], int] = lambda: 0,
        max_entries: int = 512,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._generation = generation
        self._monotonic = monotonic
        self._entries: OrderedDict[K, _Entry] = OrderedDict()
        self._inflight: dict[K, tuple[asyncio.AbstractEventLoop, asyncio.Future[_Entry]]] = {}
        self.computations = 0  # for tests and the bench: how often a query really ran

    def fresh(self, key: K) -> bytes | None:
        """The body while it is fresh, else None. No I/O, no waiting."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self._monotonic() - entry.started >= self.ttl_s or entry.generation != self._generation():
            return None
        self._entries.move_to_end(key)
        return entry.body

    async def get(self, key: K, compute: Callable[[], Awaitable[bytes]]) -> bytes:
        """The fresh body of ``key``, computing it (once, whoever else asks meanwhile)."""
        if self.ttl_s <= 0:
            self.computations += 1
            return await compute()
        body = self.fresh(key)
        if body is not None:
            return body
        loop = asyncio.get_running_loop()
        flight = self._inflight.get(key)
        if flight is not None and flight[0] is loop:
            await asyncio.wait((flight[1],))
            if not flight[1].cancelled():
                return flight[1].result().body
            return await self.get(key, compute)  # that computation failed: ask again
        future: asyncio.Future[_Entry] = loop.create_future()
        self._inflight[key] = (loop, future)
        try:
            started, generation = self._monotonic(), self._generation()
            self.computations += 1
            entry = _Entry(started, generation, await compute())
        except BaseException:
            future.cancel()  # the waiters ask again; the error is this request's alone
            raise
        finally:
            if self._inflight.get(key) == (loop, future):
                del self._inflight[key]
        future.set_result(entry)
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return entry.body
