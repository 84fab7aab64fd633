"""The live stream over a real HTTP server (uvicorn): scope filtering, delivery within 1 s
from another thread, Last-Event-ID resume, and a slow client that is dropped without
holding back the others."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ops_center.feed import Feed
from tests.support.api import Env, Server, auth, sqlite_env

pytestmark = pytest.mark.integration


@pytest.fixture
def env(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Env]:
    queue = 8 if "slow" in request.node.name else 256
    yield from sqlite_env(
        tmp_path / "stream.db", kpi_interval_s=0.2, stream_keepalive_s=0.2, stream_queue_max=queue
    )


def parse(block: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in block.splitlines():
        if line.startswith(":") or ":" not in line:
            continue
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


async def read_events(
    url: str,
    token: str,
    into: list[tuple[float, dict[str, str]]],
    stop: asyncio.Event,
    last_event_id: str | None = None,
) -> None:
    headers = auth(token) | ({"Last-Event-ID": last_event_id} if last_event_id else {})
    async with (
        httpx.AsyncClient(timeout=None) as client,
        client.stream("GET", f"{url}/api/v1/stream", headers=headers) as r,
    ):
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        buf = ""
        async for chunk in r.aiter_text():
            buf += chunk
            while "\n\n" in buf:
                block, buf = buf.split("\n\n", 1)
                ev = parse(block)
                if "event" in ev:
                    into.append((time.monotonic(), ev))
            if stop.is_set():
                return


def publish_from_thread(feed: Feed, kind: str, site: str, data: dict[str, object]) -> float:
    at: list[float] = []

    def work() -> None:
        at.append(time.monotonic())
        feed.publish(kind, site, data)  # type: ignore[arg-type]

    t = threading.Thread(target=work)
    t.start()
    t.join()
    return at[0]


def test_event_reaches_its_ward_within_a_second_and_never_another_ward(env: Env) -> None:
    with Server(env) as srv:

        async def scenario() -> None:
            tn: list[tuple[float, dict[str, str]]] = []
            qt: list[tuple[float, dict[str, str]]] = []
            leader: list[tuple[float, dict[str, str]]] = []
            stop = asyncio.Event()
            tasks = [
                asyncio.create_task(read_events(srv.url, env.tokens[u], box, stop))
                for u, box in (("tn-staff", tn), ("qt-staff", qt), ("leader", leader))
            ]
            deadline = time.monotonic() + 10
            while srv.feed.stats.subscribers < 3:  # every client is subscribed before the publish
                assert time.monotonic() < deadline, srv.feed.stats
                await asyncio.sleep(0.02)
            sent = await asyncio.to_thread(
                publish_from_thread,
                srv.feed,
                "alert",
                "thong-nhat",
                {"alert": {"id": "al-tn-9", "severity": "critical"}},
            )
            while not any(e["event"] == "alert" for _, e in tn) and time.monotonic() - sent < 2:
                await asyncio.sleep(0.01)
            await asyncio.sleep(1.0)  # time for a misrouted event (and several kpi rounds) to show up
            stop.set()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            got = [(at, e) for at, e in tn if e["event"] == "alert"]
            assert got, tn
            assert got[0][0] - sent < 1.0
            assert '"al-tn-9"' in got[0][1]["data"]
            assert not [e for _, e in qt if "thong-nhat" in e["data"] or "al-tn-9" in e["data"]], qt
            assert any(e["event"] == "alert" for _, e in leader)
            # KPI events: each ward gets its own site's KPIs only.
            assert {e["event"] for _, e in tn} >= {"kpi"}
            assert all('"site": "quang-trung"' in e["data"] for _, e in qt if e["event"] == "kpi")
            assert all('"site": "thong-nhat"' in e["data"] for _, e in tn if e["event"] == "kpi")

        asyncio.run(scenario())


def test_last_event_id_resumes_from_the_ring(env: Env) -> None:
    with Server(env) as srv:
        first = srv.feed.publish("incident", "thong-nhat", {"n": 1})
        srv.feed.publish("incident", "quang-trung", {"n": 2})
        srv.feed.publish("incident", "thong-nhat", {"n": 3})

        async def scenario() -> list[dict[str, str]]:
            box: list[tuple[float, dict[str, str]]] = []
            stop = asyncio.Event()
            task = asyncio.create_task(read_events(srv.url, env.tokens["tn-staff"], box, stop, first.id))
            deadline = time.monotonic() + 5
            while not any(e["event"] == "incident" for _, e in box) and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)  # nothing else may follow
            stop.set()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return [e for _, e in box if e["event"] in ("incident", "resync")]

        events = asyncio.run(scenario())
        assert [e["event"] for e in events] == ["incident"] and '"n": 3' in events[0]["data"]

        async def stale() -> list[str]:
            box: list[tuple[float, dict[str, str]]] = []
            stop = asyncio.Event()
            task = asyncio.create_task(read_events(srv.url, env.tokens["tn-staff"], box, stop, "deadbeef-1"))
            deadline = time.monotonic() + 5
            while not any(e["event"] == "resync" for _, e in box) and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            stop.set()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return [e["event"] for _, e in box]

        assert "resync" in asyncio.run(stale())


def test_slow_client_is_dropped_and_does_not_hold_back_others(env: Env) -> None:
    token = env.tokens["tn-staff"]
    with Server(env) as srv:
        # A client that connects and never reads: its socket buffers fill, then its queue.
        slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
        slow.connect(("127.0.0.1", srv.port))
        slow.sendall(
            f"GET /api/v1/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
        )
        deadline = time.monotonic() + 5
        while srv.feed.stats.subscribers < 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        payload = "x" * 65_536
        n = 200

        async def scenario() -> list[tuple[float, dict[str, str]]]:
            box: list[tuple[float, dict[str, str]]] = []
            stop = asyncio.Event()
            task = asyncio.create_task(read_events(srv.url, token, box, stop))
            await asyncio.sleep(0.4)
            start = time.monotonic()
            for i in range(n):
                srv.feed.publish("alert", "thong-nhat", {"i": i, "pad": payload})
                await asyncio.sleep(0.002)
            while sum(1 for _, e in box if e["event"] == "alert") < n and time.monotonic() - start < 10:
                await asyncio.sleep(0.02)
            stop.set()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return box

        box = asyncio.run(scenario())
        slow.close()
        alerts = [e for _, e in box if e["event"] == "alert"]
        assert len(alerts) == n  # the reading client got everything
        assert srv.feed.stats.dropped_clients >= 1  # the silent one was dropped, not waited for
