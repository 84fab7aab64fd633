"""``smartward bench api`` (also ``python -m bench.api``): latency of the overview
and incidents routes with many concurrent clients (bench/api_client.py):

- ``screens``: every client is an open operations screen refreshing the site overview and
  the incidents list once a second (what 200 open screens do to the API);
- ``closed``: every client asks again as soon as it has its answer (saturation throughput);
- ``serial`` (not in ``both``): one client, one route after the other: what each route costs
  the server in CPU per request, with no queueing.

Without ``--url`` the bench seeds a store (a new SQLite file, or its own database on the
PostgreSQL server of ``--pg``; bench/api_seed.py, bench/api_server.py) with ``--users`` ward users,
starts the API on it in a uvicorn subprocess (``--workers``) and gives every client its own
access token (of those users in turn), as open screens in a ward office have; with ``--url``
it runs them against a running server with one login as ``--user`` for every client
(``--server-pid`` adds that server's CPU). Prints p50/p90/p99/max per route, requests per
second, errors, the CPU used by the client, the server (per request too) and the whole
machine, and the load average. Exit 1 when any request failed::

    python -m bench.api [--clients 200] [--duration-s 20] [--workers 1|2] [--mode serial]
    python -m bench.api --pg postgresql://postgres@127.0.0.1:5432/postgres --workers 2
    smartward bench api --url http://127.0.0.1:8000 --user U --password P --site thong-nhat [--server-pid PID]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from bench.api_client import LoadResult, Mode, run_load

MODES: tuple[Mode, ...] = ("screens", "closed")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[k]


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    token: str
    site: str
    description: str
    sample: Callable[[], Mapping[str, float]] | None = None
    screen_tokens: Sequence[str] = ()  # one per client; empty: every client sends ``token``

    def headers(self) -> list[dict[str, str]]:
        return [{"Authorization": f"Bearer {t}"} for t in (self.screen_tokens or (self.token,))]


def login(url: str, user: str, password: str) -> str:
    import httpx

    r = httpx.post(f"{url}/api/v1/auth/token", data={"username": user, "password": password}, timeout=30.0)
    r.raise_for_status()
    token: str = r.json()["access_token"]
    return token


def routes_of(site: str) -> dict[str, str]:
    return {
        "overview": f"/api/v1/sites/{site}/overview",
        "incidents": f"/api/v1/incidents?site={site}&limit=50",
    }


def check_routes(target: Target) -> None:
    """One request per route before the load: a 200 with a JSON body, or stop here."""
    import httpx

    with httpx.Client(base_url=target.url, headers={"Authorization": f"Bearer {target.token}"}) as c:
        for name, path in routes_of(target.site).items():
            r = c.get(path)
            if r.status_code != 200:
                raise RuntimeError(f"{name}: HTTP {r.status_code} {r.text[:200]}")
            r.json()


def report(result: LoadResult, *, period_s: float, cores: int) -> str:
    m = result.measured_s
    head = f"mode {result.mode}: {result.clients} clients, {m:.1f} s measured"
    if result.mode == "screens":
        head += f", each refreshing overview + incidents every {period_s:g} s ±10 %"
    lines = [head]
    for name, values in result.latencies_s.items():
        ms = [v * 1000 for v in values]
        p50, p90, p99 = (percentile(ms, q) for q in (0.5, 0.9, 0.99))
        lines.append(
            f"  {name:<10} n={len(ms):<7} p50={p50:7.1f} ms  p90={p90:7.1f} ms  p99={p99:7.1f} ms"
            f"  max={max(ms, default=float('nan')):7.1f} ms"
        )
    errors = sum(result.errors.values())
    line = f"  throughput {result.requests / m:.0f} req/s"
    if result.mode == "screens":
        offered = 2 * result.clients / period_s
        line += f" (offered {offered:.0f}), refreshes {result.refreshes}, late {result.late}"
    detail = ", ".join(f"{k} {v}" for k, v in sorted(result.errors.items()))
    line += f", errors {errors}" + (f" ({detail})" if detail else "")
    lines.append(line)
    cpu = result.cpu_s
    parts = [f"client {100 * cpu.get('client', 0.0) / m:.0f} %"]
    if "server" in cpu:
        per_request = 1000 * cpu["server"] / max(1, result.requests)
        parts.append(f"server {100 * cpu['server'] / m:.0f} % ({per_request:.2f} ms per request)")
    if cpu.get("machine_total"):
        parts.append(f"machine {100 * cpu['machine'] / cpu['machine_total']:.0f} % of {cores} cores")
    lines.append("  CPU (100 % = one core): " + " · ".join(parts))
    lines.append("  load average {:.2f} {:.2f} {:.2f} (1, 5, 15 min)".format(*result.load_average))
    return "\n".join(lines)


@contextlib.contextmanager
def local_target(args: argparse.Namespace) -> Iterator[Target]:
    """A seeded store and the API serving it, for the duration of the bench."""
    from bench.api_seed import screen_tokens, seed_store
    from bench.api_server import ServerProcess
    from bench.measure import machine_busy_s, tree_cpu_s
    from contract.registry import load_registry

    registry = load_registry(args.registry)
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="smartward-bench-api-")))
        db_url = f"sqlite:///{tmp / 'bench.db'}"
        if args.pg:
            db_url = stack.enter_context(scratch_database(args.pg))
        print(f"seeding {db_url.split('@')[-1]} ...", file=sys.stderr, flush=True)
        seeded = seed_store(
            db_url,
            registry,
            site=args.site,
            registry_path=args.registry,
            hours=args.seed_hours,
            incident_days=args.incident_days,
            users=args.users,
        )
        server = stack.enter_context(
            ServerProcess(db_url, workers=args.workers, registry=args.registry, pool_max=args.pool_max)
        )
        pid = server.pid
        assert pid is not None

        def sample() -> dict[str, float]:
            busy, total = machine_busy_s()
            return {"server": tree_cpu_s(pid), "machine": busy, "machine_total": total}

        description = (
            f"server: uvicorn {args.workers} worker(s), {server.loop} + {server.http}, store "
            f"{'postgresql' if args.pg else 'sqlite'} (seed: {seeded.readings:,} readings, "
            f"{seeded.batches:,} batches in {args.seed_hours} h, {seeded.incidents:,} incidents, "
            f"{seeded.alerts:,} alerts)"
        )
        description += f"; {args.clients} screens, each with its own token, of {args.users} users"
        token = login(server.url, seeded.user, seeded.password)
        tokens = screen_tokens(server.secret_key, args.site, users=args.users, screens=args.clients)
        yield Target(server.url, token, args.site, description, sample, tokens)


@contextlib.contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    """A new database on the server of ``server_url`` (any database there to connect to),
    dropped afterwards."""
    import psycopg
    from psycopg import sql

    name = f"smartward_bench_api_{os.getpid()}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlsplit(server_url)._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextlib.contextmanager
def remote_target(args: argparse.Namespace) -> Iterator[Target]:
    from bench.measure import machine_busy_s, tree_cpu_s

    token = login(args.url, args.user, args.password)
    pid = args.server_pid
    sample = None
    if pid is not None:

        def sample() -> dict[str, float]:
            busy, total = machine_busy_s()
            return {"server": tree_cpu_s(pid), "machine": busy, "machine_total": total}

    # One login for every client: logging in 200 times would trip the login rate limit.
    description = f"server: {args.url} (one token for every client)"
    yield Target(args.url.rstrip("/"), token, args.site, description, sample)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="smartward bench api", description=__doc__.split("\n\n")[0])
    p.add_argument("--url", help="a running API (default: seed a store and start one)")
    p.add_argument("--user", help="with --url: a user who may see --site")
    p.add_argument("--password")
    p.add_argument("--server-pid", type=int, help="with --url: the server's process, for its CPU")
    p.add_argument(
        "--users",
        type=int,
        default=20,
        help="ward users seeded; each screen has its own token of one of them",
    )
    p.add_argument("--pg", help="PostgreSQL server URL: seed a scratch database there instead of SQLite")
    p.add_argument("--registry", type=Path, default=None, help="registry file (default: the demo registry)")
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes of the started server")
    p.add_argument("--pool-max", type=int, default=8, help="PostgreSQL connections per worker")
    p.add_argument("--seed-hours", type=int, default=24, help="hours of readings and batches seeded")
    p.add_argument("--incident-days", type=int, default=90, help="days of incident history seeded")
    p.add_argument("--site", default="thong-nhat")
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--duration-s", type=float, default=20.0, help="measured seconds per mode")
    p.add_argument("--warmup-s", type=float, default=3.0)
    p.add_argument("--period-s", type=float, default=1.0, help="screens: refresh period")
    p.add_argument(
        "--mode",
        choices=(*MODES, "both", "serial"),
        default="both",
        help="serial: one client per route in turn, for the server CPU each route costs",
    )
    return p


def report_serial(name: str, result: LoadResult) -> str:
    ms = [v * 1000 for v in result.latencies_s[name]]
    line = (
        f"  {name:<10} n={len(ms):<7} p50={percentile(ms, 0.5):7.2f} ms  p99={percentile(ms, 0.99):7.2f} ms"
    )
    if "server" in result.cpu_s:
        line += f"  server CPU {1000 * result.cpu_s['server'] / max(1, result.requests):.2f} ms per request"
    return line + f"  load {result.load_average[0]:.2f}"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(argv) if argv is not None else None)
    import httpx  # the dev extra: imported when the benchmark runs, so --help works without it

    if args.url and not (args.user and args.password):
        print("--url cần --user và --password / --url needs --user and --password", file=sys.stderr)
        return 2
    try:
        import uvloop

        new_loop: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    except ImportError:
        new_loop = asyncio.new_event_loop
    cores = os.cpu_count() or 1
    failed = False

    def load(target: Target, routes: Mapping[str, str], mode: Mode, clients: int) -> LoadResult:
        with asyncio.Runner(loop_factory=new_loop) as runner:
            return runner.run(
                run_load(
                    target.url,
                    routes,
                    target.headers(),
                    mode=mode,
                    clients=clients,
                    duration_s=args.duration_s,
                    warmup_s=args.warmup_s,
                    period_s=args.period_s,
                    sample=target.sample,
                )
            )

    try:
        with remote_target(args) if args.url else local_target(args) as target:
            check_routes(target)
            print(f"bench api: {target.description}", flush=True)
            if args.mode == "serial":
                print(f"mode serial: one client, one route at a time, {args.duration_s:g} s each")
                for name, path in routes_of(target.site).items():
                    result = load(target, {name: path}, "closed", 1)
                    print(report_serial(name, result), flush=True)
                    failed = failed or bool(result.errors)
                return 1 if failed else 0
            for mode in MODES if args.mode == "both" else (args.mode,):
                result = load(target, routes_of(target.site), mode, args.clients)
                print(report(result, period_s=args.period_s, cores=cores), flush=True)
                failed = failed or bool(result.errors)
    except (httpx.HTTPError, RuntimeError) as exc:
        print(f"bench api thất bại / failed: {exc}", file=sys.stderr)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
