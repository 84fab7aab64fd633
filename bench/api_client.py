"""The client side of ``smartward bench api``: N virtual clients, each on its own HTTP/1.1
keep-alive connection (raw asyncio streams: a few tens of µs of client CPU per request, so
the client is not what is measured), in one of two modes:

- ``screens``: each client is an open operations screen that refreshes the overview and the
  incidents list once every ``period_s`` (jittered ±10 %, starts spread over the first
  period). The schedule does not wait for slow answers beyond the refresh in flight: a
  refresh due while the previous one is still running starts as soon as it ends and is
  counted ``late`` (the next refresh was due before this one ended);
- ``closed``: each client sends its next request as soon as the previous answer is in,
  alternating the two routes (saturation throughput).

Latency is measured per request, from writing it to reading the last byte of the answer.
Requests sent during the warm-up are not counted.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

Mode = Literal["screens", "closed"]


class HttpError(Exception):
    pass


class Connection:
    """One HTTP/1.1 keep-alive connection; reconnects after an error or a ``close``."""

    def __init__(self, url: str, headers: Mapping[str, str], timeout_s: float) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.timeout_s = timeout_s
        lines = [f"Host: {self.host}:{self.port}", "Accept: application/json", "Connection: keep-alive"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self._head = ("\r\n".join(lines) + "\r\n\r\n").encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> tuple[int, int]:
        """(status, body bytes)."""
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._get(path)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            self.close()
            raise HttpError(type(exc).__name__) from exc
        except TimeoutError as exc:
            self.close()
            raise HttpError("timeout") from exc

    async def _get(self, path: str) -> tuple[int, int]:
        if self._writer is None or self._reader is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._reader, self._writer
        writer.write(b"GET " + path.encode() + b" HTTP/1.1\r\n" + self._head)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        chunked = close = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            key = name.strip().lower()
            if key == b"content-length":
                length = int(value)
            elif key == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif key == b"connection":
                close = b"close" in value.lower()
        size = 0
        if chunked:
            while True:
                n = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await reader.readexactly(n + 2)
                size += n
                if n == 0:
                    break
        elif length:
            await reader.readexactly(length)
            size = length
        if close:
            self.close()
        return status, size

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


@dataclass
class LoadResult:
    mode: Mode
    clients: int
    measured_s: float = 0.0
    latencies_s: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    refreshes: int = 0  # screens: completed refresh cycles (both routes)
    late: int = 0  # screens: refreshes still running when the next one was due
    cpu_s: dict[str, float] = field(default_factory=dict)  # "client" and what ``sample`` returns
    load_average: tuple[float, float, float] = (0.0, 0.0, 0.0)  # 1, 5, 15 min, when the window closed

    @property
    def requests(self) -> int:
        return sum(len(v) for v in self.latencies_s.values()) + sum(self.errors.values())


async def run_load(
    url: str,
    routes: Mapping[str, str],
    headers: Sequence[Mapping[str, str]],
    *,
    mode: Mode,
    clients: int,
    duration_s: float,
    warmup_s: float = 2.0,
    period_s: float = 1.0,
    timeout_s: float = 30.0,
    seed: int = 1,
    sample: Callable[[], Mapping[str, float]] | None = None,
) -> LoadResult:
    """Client i sends ``headers[i % len(headers)]`` (its own token). ``sample`` returns
    cumulative CPU seconds by name (server, machine...); it is read when the measured window
    opens and when it closes, and the differences reported, with the load average at the
    close."""
    loop = asyncio.get_running_loop()
    result = LoadResult(mode, clients, latencies_s={name: [] for name in routes})
    names = list(routes)
    began = loop.time()
    measure_from = began + warmup_s
    end = measure_from + duration_s
    marks: list[dict[str, float]] = []

    def read_cpu() -> dict[str, float]:
        return {"client": time.process_time(), **(sample() if sample is not None else {})}

    async def request(conn: Connection, name: str) -> bool:
        # perf_counter, not loop.time(): uvloop's clock has millisecond resolution.
        sent, counted = time.perf_counter(), loop.time() >= measure_from
        try:
            status, _ = await conn.get(routes[name])
        except HttpError as exc:
            if counted:
                result.errors[str(exc)] = result.errors.get(str(exc), 0) + 1
            return False
        if counted:
            if status == 200:
                result.latencies_s[name].append(time.perf_counter() - sent)
            else:
                result.errors[f"http {status}"] = result.errors.get(f"http {status}", 0) + 1
        return status == 200

    async def screen(i: int) -> None:
        rng = random.Random(seed * 100_003 + i)
        conn = Connection(url, headers[i % len(headers)], timeout_s)
        due = began + rng.uniform(0, period_s)
        try:
            while True:
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)  # the screen's refresh timer
                start = loop.time()
                if start >= end:
                    return
                for name in names:
                    await request(conn, name)
                due += period_s * rng.uniform(0.9, 1.1)
                if start >= measure_from:
                    result.refreshes += 1
                    if loop.time() > due:
                        result.late += 1
                due = max(due, loop.time())
        finally:
            conn.close()

    async def closed(i: int) -> None:
        conn = Connection(url, headers[i % len(headers)], timeout_s)
        k = i
        try:
            while loop.time() < end:
                await request(conn, names[k % len(names)])
                k += 1
        finally:
            conn.close()

    async def mark_window() -> None:
        for at in (measure_from, end):
            await asyncio.sleep(max(0.0, at - loop.time()))
            marks.append(read_cpu())

    worker = screen if mode == "screens" else closed
    marker = asyncio.create_task(mark_window())
    await asyncio.gather(*(worker(i) for i in range(clients)))
    await marker
    first, last = marks
    result.cpu_s = {k: last[k] - first.get(k, last[k]) for k in last}
    result.load_average = os.getloadavg()
    # Requests are counted by when they were sent: those sent in the window, over the window.
    result.measured_s = end - measure_from
    return result
