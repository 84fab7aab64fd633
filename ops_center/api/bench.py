"""``smartward bench api``: latency of the overview and incidents routes under load.

    smartward bench api --url http://127.0.0.1:8000 --user demo-ward --password ... \\
        [--site thong-nhat] [--clients 200] [--requests 4000] [--duration-s 30]

``--clients`` concurrent HTTP clients (httpx, async, one connection each) share a bounded
number of requests (and a time bound), alternating ``/sites/{site}/overview`` and
``/incidents?site=``; prints p50/p90/p99 per route and the throughput. Exit 1 when any
request failed.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx


@dataclass
class Result:
    latencies_s: dict[str, list[float]] = field(default_factory=dict)
    errors: int = 0
    requests: int = 0
    elapsed_s: float = 0.0


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[k]


async def run(url: str, token: str, site: str, *, clients: int, requests: int, duration_s: float) -> Result:
    routes = {
        "overview": f"/api/v1/sites/{site}/overview",
        "incidents": f"/api/v1/incidents?site={site}&limit=50",
    }
    result = Result(latencies_s={k: [] for k in routes})
    budget = iter(range(requests))
    deadline = time.perf_counter() + duration_s
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30.0) as client:

        async def worker() -> None:
            for i in budget:
                if time.perf_counter() > deadline:
                    return
                name = "overview" if i % 2 == 0 else "incidents"
                start = time.perf_counter()
                try:
                    r = await client.get(routes[name])
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                result.latencies_s[name].append(time.perf_counter() - start)
                result.requests += 1
                if not ok:
                    result.errors += 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        result.elapsed_s = time.perf_counter() - began
    return result


def login(url: str, user: str, password: str) -> str:
    r = httpx.post(f"{url}/api/v1/auth/token", data={"username": user, "password": password}, timeout=30.0)
    r.raise_for_status()
    token: str = r.json()["access_token"]
    return token


def report(result: Result, clients: int) -> str:
    lines = [
        f"bench api: {result.requests} requests, {clients} clients, {result.elapsed_s:.1f} s, "
        f"{result.requests / max(result.elapsed_s, 1e-9):.0f} req/s, errors {result.errors}"
    ]
    for name, values in result.latencies_s.items():
        ms = [v * 1000 for v in values]
        lines.append(
            f"  {name:<10} n={len(ms):<6} p50={percentile(ms, 0.5):.1f} ms  p90={percentile(ms, 0.9):.1f} ms"
            f"  p99={percentile(ms, 0.99):.1f} ms  mean={statistics.fmean(ms) if ms else float('nan'):.1f} ms"
        )
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="smartward bench api", description="API latency under concurrent load")
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--site", default="thong-nhat")
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--requests", type=int, default=4000)
    p.add_argument("--duration-s", type=float, default=60.0)
    args = p.parse_args(list(argv))
    try:
        token = login(args.url, args.user, args.password)
    except httpx.HTTPError as exc:
        print(f"Đăng nhập thất bại / login failed: {exc}", file=sys.stderr)
        return 1
    result = asyncio.run(
        run(
            args.url,
            token,
            args.site,
            clients=args.clients,
            requests=args.requests,
            duration_s=args.duration_s,
        )
    )
    print(report(result, args.clients))
    return 0 if result.errors == 0 else 1
