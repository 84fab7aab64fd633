"""``smartward bench gateways``: N gateways on one broker, then a broker restart storm.

    smartward bench gateways [--gateways 10000] [--interval 60] [--steady 120] [--outage 60]

One process holds N MQTT connections (bench/mqttlite.py), one per gateway of a generated
registry (``--registry`` keeps the file), each its own client id and user name, each sending a
contract telemetry batch every ``--interval`` seconds (seq per gateway) and following its own
retained ack watermark as the edge does. Mosquitto runs the project's configuration
(deploy/mosquitto/smartward.conf, on a free port, anonymous) and a real ``ingest run`` stores
into SQLite. After ``--steady`` seconds the broker is stopped (SIGTERM, or ``--kill9``) for
``--outage`` seconds while the gateways keep batching; then it starts again and every gateway
reconnects with the edge's back-off (exponential with equal jitter, 0.5 s to 60 s) and sends
its backlog. Printed: connections held, broker RSS, time until all reconnected and until every
backlog is covered by a watermark, lag (batch made → covered), lost and duplicated batches.
Bounded: ≤ 20 000 gateways, ≤ 600 s per phase, and a drain deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from bench.gateways_env import Broker, FleetSpec, write_registry
from bench.ingest_store import count_stored
from bench.measure import cpu_seconds, free_port, metrics_ready, percentile
from bench.mqttlite import (
    DISCONNECT_PACKET,
    MqttConnection,
    connect_packet,
    publish_packet,
    subscribe_packet,
)
from bench.pgserver import BenchServer, start_bench_server
from contract import topics
from contract.codec import decode_ack, encode
from contract.errors import ContractError
from contract.models import Reading, TelemetryBatch

MAX_GATEWAYS = 20_000
MAX_PHASE_S = 600.0
WINDOW = 16  # batches awaiting PUBACK per gateway
_REPO = Path(__file__).resolve().parents[1]


class Gateway:
    """One gateway: a seq counter, a backlog until the watermark covers it, one connection."""

    def __init__(self, fleet: Fleet, site: str, gateway: str, pairs: list[tuple[str, str]]) -> None:
        self.fleet, self.site, self.id, self.pairs = fleet, site, gateway, pairs
        self.telemetry, self.ack = topics.telemetry(site, gateway), topics.ack(site, gateway)
        self.seq = self.mark = 0
        self.backlog: dict[int, tuple[bytes, float]] = {}  # seq -> (payload, made at, monotonic)
        self.inflight: dict[int, int] = {}  # packet id -> seq
        self.sent: set[int] = set()  # seqs published on this connection
        self.ever_sent: set[int] = set()
        self.conn: MqttConnection | None = None
        self._pid = 0

    def make_batch(self) -> None:
        self.seq += 1
        now = datetime.now(UTC)
        readings = [Reading(s, m, now, 55.0 + (self.seq + i) % 20 if m == "noise_laeq" else 75.0)
                    for i, (s, m) in enumerate(self.pairs)]
        payload = encode(TelemetryBatch(v=1, gateway=self.id, seq=self.seq, sent_at=now, readings=readings))
        self.backlog[self.seq] = (payload, time.monotonic())
        self.flush()

    def attach(self, conn: MqttConnection) -> None:
        self.conn, self.inflight, self.sent = conn, {}, set()
        self._pid = (self._pid + 1) % 65535 + 1
        conn.send(subscribe_packet(self.ack, self._pid))
        self.flush()

    def detach(self) -> None:
        self.conn = None

    def flush(self) -> None:
        conn = self.conn
        if conn is None:
            return
        for seq in sorted(self.backlog):
            if len(self.inflight) >= WINDOW:
                return
            if seq in self.sent:
                continue
            self._pid = self._pid % 65535 + 1
            dup = seq in self.ever_sent
            if not conn.send(publish_packet(self.telemetry, self.backlog[seq][0], self._pid, dup=dup)):
                return
            self.fleet.published += 1
            self.fleet.resent += dup
            self.inflight[self._pid] = seq
            self.sent.add(seq)
            self.ever_sent.add(seq)

    def on_puback(self, packet_id: int) -> None:
        if self.inflight.pop(packet_id, None) is not None:
            self.flush()

    def on_message(self, topic: str, payload: bytes) -> None:
        if topic != self.ack or not payload:
            return
        try:
            seq = decode_ack(payload).seq
        except ContractError:
            return
        now = time.monotonic()
        for s in range(self.mark + 1, min(seq, self.seq) + 1):
            item = self.backlog.pop(s, None)
            self.ever_sent.discard(s)
            if item is not None:
                self.fleet.lags[self.fleet.phase].append(now - item[1])
        self.mark = max(self.mark, min(seq, self.seq))
        self.fleet.last_progress = now


class Fleet:
    def __init__(self, host: str, port: int, reconnect_min_s: float, reconnect_max_s: float,
                 seed: int) -> None:
        self.host, self.port = host, port
        self.reconnect_min_s, self.reconnect_max_s = reconnect_min_s, reconnect_max_s
        self.rng = random.Random(seed)
        self.gateways: list[Gateway] = []
        self.connected = self.max_connected = self.published = self.resent = self.refused = 0
        self.phase = "steady"
        self.lags: dict[str, list[float]] = {"steady": [], "storm": []}
        self.last_progress = 0.0
        self.stopping = False
        self.ramp = asyncio.Semaphore(500)

    def backoff_s(self, failures: int) -> float:
        """The edge's: exponential, equal jitter (edge/mqtt_publisher.py ``_backoff_s``, one URL)."""
        base = min(self.reconnect_max_s, self.reconnect_min_s * 2.0 ** (failures - 1))
        return base / 2 + self.rng.uniform(0, base / 2)

    async def hold(self, gw: Gateway, keepalive_s: int) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        first = True
        while not self.stopping:
            conn: MqttConnection | None = None
            try:
                if first:
                    async with self.ramp:
                        conn = await self._connect(loop, gw, keepalive_s)
                else:
                    conn = await self._connect(loop, gw, keepalive_s)
            except (OSError, TimeoutError, ConnectionError):
                if conn is not None:
                    conn.close()
                failures += 1
                self.refused += 1
                await asyncio.sleep(self.backoff_s(failures))
                continue
            first, failures = False, 0
            self.connected += 1
            self.max_connected = max(self.max_connected, self.connected)
            gw.attach(conn)
            await conn.closed
            gw.detach()
            self.connected -= 1

    async def _connect(self, loop: asyncio.AbstractEventLoop, gw: Gateway,
                       keepalive_s: int) -> MqttConnection:
        _, conn = await asyncio.wait_for(loop.create_connection(
            lambda: MqttConnection(gw.on_message, gw.on_puback), self.host, self.port), 10)
        conn.send(connect_packet(gw.id, username=gw.id, clean=False, keepalive_s=keepalive_s))
        try:
            rc = await asyncio.wait_for(asyncio.shield(conn.connack), 10)
        except BaseException:
            conn.close()
            raise
        if rc != 0:
            conn.close()
            raise ConnectionError(f"CONNACK {rc}")
        return conn

    async def produce(self, gw: Gateway, interval_s: float) -> None:
        await asyncio.sleep(self.rng.uniform(0, interval_s))
        while not self.stopping:
            gw.make_batch()
            await asyncio.sleep(interval_s)


async def _wait(cond: object, timeout_s: float, sample: Broker) -> bool:
    """Poll ``cond()`` every 0.2 s (sampling the broker's RSS) until true or the deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        sample.rss_kib()
        if cond():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.2)
    return bool(cond())  # type: ignore[operator]


async def scenario(args: argparse.Namespace, broker: Broker, fleet_spec: FleetSpec,
                   report: dict[str, float | int | str]) -> dict[str, int]:
    fleet = Fleet("127.0.0.1", broker.port, args.reconnect_min, args.reconnect_max, args.seed)
    fleet.gateways = [Gateway(fleet, *spec) for spec in fleet_spec]
    n = len(fleet.gateways)
    keepalive = int(max(60, 3 * args.interval))
    t0 = time.monotonic()
    holders = [asyncio.create_task(fleet.hold(gw, keepalive)) for gw in fleet.gateways]
    ok = await _wait(lambda: fleet.connected == n, args.connect_timeout, broker)
    report["connect_s"] = round(time.monotonic() - t0, 1)
    report["connected_after_ramp"] = fleet.connected
    report["broker_rss_idle_mib"] = round(broker.rss_kib() / 1024, 1)
    if not ok:
        report["error"] = f"only {fleet.connected} of {n} connected within {args.connect_timeout} s"
    # Holding the connections alone, before any batch: the broker's cost per connected gateway.
    cpu0, t_idle = broker.cpu(), time.monotonic()
    await _wait(lambda: False, args.idle, broker)
    idle_cpu = broker.cpu() - cpu0
    report["broker_cpu_idle_pct_of_core"] = round(idle_cpu / (time.monotonic() - t_idle) * 100, 2)
    producers = [asyncio.create_task(fleet.produce(gw, args.interval)) for gw in fleet.gateways]
    cpu0, t_steady = broker.cpu(), time.monotonic()
    await _wait(lambda: False, args.steady, broker)
    steady_cpu = broker.cpu() - cpu0
    report["broker_cpu_steady_us_per_msg"] = round(steady_cpu / max(1, fleet.published) * 1e6, 1)
    report["broker_cpu_steady_pct_of_core"] = round(steady_cpu / (time.monotonic() - t_steady) * 100, 2)
    report["broker_rss_steady_mib"] = round(broker.rss_kib() / 1024, 1)
    report["connections_held"] = fleet.connected
    report["published_steady"] = fleet.published
    fleet.phase = "storm"
    broker.stop(args.kill9)
    t_down = time.monotonic()
    await _wait(lambda: fleet.connected == 0, 30, broker)
    await asyncio.sleep(max(0.0, args.outage - (time.monotonic() - t_down)))
    at_restart = {gw.id: gw.seq for gw in fleet.gateways}
    report["backlog_batches_at_restart"] = sum(len(gw.backlog) for gw in fleet.gateways)
    refused0, cpu0 = fleet.refused, broker.cpu()
    broker.start()
    t_up = time.monotonic()
    all_back = await _wait(lambda: fleet.connected == n, args.drain_timeout, broker)
    report["reconnect_all_s"] = round(time.monotonic() - t_up, 1) if all_back else f"> {args.drain_timeout}"
    drained = await _wait(lambda: all(gw.mark >= at_restart[gw.id] for gw in fleet.gateways),
                          max(1.0, args.drain_timeout - (time.monotonic() - t_up)), broker)
    report["drain_s"] = (round(time.monotonic() - t_up, 1) if drained
                         else f"> {args.drain_timeout} (NOT DRAINED)")
    report["refused_attempts_after_restart"] = fleet.refused - refused0
    report["refused_attempts_total"] = fleet.refused
    report["broker_cpu_storm_s"] = round(broker.cpu() - cpu0, 2)
    report["broker_rss_after_storm_mib"] = round(broker.rss_kib() / 1024, 1)
    fleet.stopping = True
    for task in producers:
        task.cancel()
    # The batches made during the drain: every gateway covered up to its last seq.
    await _wait(lambda: all(gw.mark >= gw.seq for gw in fleet.gateways), 60, broker)
    report["broker_rss_max_mib"] = round(broker.max_rss_kib / 1024, 1)
    report["max_connections_held"] = fleet.max_connected
    report["batches_made"] = sum(gw.seq for gw in fleet.gateways)
    report["not_acked"] = sum(len(gw.backlog) for gw in fleet.gateways)
    report["publishes"] = fleet.published
    report["resent"] = fleet.resent
    for phase, lags in fleet.lags.items():
        report[f"lag_{phase}_p50_s"] = round(percentile(lags, 50), 3)
        report[f"lag_{phase}_p99_s"] = round(percentile(lags, 99), 3)
        report[f"lag_{phase}_max_s"] = round(max(lags, default=float("nan")), 3)
    for gw in fleet.gateways:
        if gw.conn is not None:
            gw.conn.send(DISCONNECT_PACKET)
            gw.conn.close()
    await asyncio.gather(*holders, *producers, return_exceptions=True)
    return {gw.id: gw.seq for gw in fleet.gateways}


def _raise_open_files(need: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)) if hard > 0 else need, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="smartward bench gateways", description=__doc__.split("\n\n")[0])
    p.add_argument("--gateways", type=int, default=10_000, help="gateways (default %(default)s)")
    p.add_argument("--sensors", type=int, default=5, help="noise sensors a gateway (2 readings each)")
    p.add_argument("--interval", type=float, default=60, help="seconds between a gateway's batches")
    p.add_argument("--steady", type=float, default=120, help="seconds before the broker restarts")
    p.add_argument("--idle", type=float, default=10, help="seconds connected before the first batch")
    p.add_argument("--outage", type=float, default=60, help="seconds the broker is down")
    p.add_argument("--kill9", action="store_true", help="kill -9 the broker instead of SIGTERM")
    p.add_argument("--reconnect-min", type=float, default=0.5, help="edge back-off floor (s)")
    p.add_argument("--reconnect-max", type=float, default=60, help="edge back-off cap (s)")
    p.add_argument("--connect-timeout", type=float, default=300, help="seconds for the first connections")
    p.add_argument("--drain-timeout", type=float, default=300, help="seconds after the restart to drain")
    p.add_argument("--workers", type=int, default=1, help="ingest worker processes")
    p.add_argument("--db", default=None, help="store URL (default: SQLite in a temp dir)")
    p.add_argument("--timescale", action="store_true",
                   help="start a private TimescaleDB (fsync on, bench.pgserver) and store there")
    p.add_argument("--registry", type=Path, default=None, help="also write the generated registry here")
    p.add_argument("--seed", type=int, default=1)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(argv) if argv is not None else None)
    phases = (args.steady, args.outage, args.drain_timeout, args.connect_timeout, args.idle)
    if not 1 <= args.gateways <= MAX_GATEWAYS or not all(0 < x <= MAX_PHASE_S for x in phases) \
            or not 0 < args.interval <= MAX_PHASE_S or not 1 <= args.sensors <= 50:
        print(f"1 ≤ --gateways ≤ {MAX_GATEWAYS}, 1 ≤ --sensors ≤ 50, "
              f"phases and --interval in (0, {MAX_PHASE_S:g}] s", file=sys.stderr)
        return 2
    limit = _raise_open_files(args.gateways + 1000)
    if limit < args.gateways + 200:
        print(f"open-files limit {limit} < gateways + 200: raise it (ulimit -n)", file=sys.stderr)
        return 2
    from ingest.cli import open_store

    tmp = Path(tempfile.mkdtemp(prefix="smartward-gwbench-"))
    broker = Broker(tmp)
    workers: list[subprocess.Popen[bytes]] = []
    server: BenchServer | None = None
    try:
        if args.timescale:
            server = start_bench_server("timescaledb")
            args.db = server.create_db("gwbench")
        spec = write_registry(tmp / "registry.yaml", args.gateways, args.sensors)
        if args.registry:
            shutil.copyfile(tmp / "registry.yaml", args.registry)
        db_url = args.db or f"sqlite:///{tmp / 'store.db'}"
        store = open_store(db_url)
        store.migrate()
        store.close()
        broker.start()
        env = {**os.environ, "SMARTWARD_MQTT_URL": f"mqtt://127.0.0.1:{broker.port}",
               "SMARTWARD_DB_URL": db_url,
               "SMARTWARD_REGISTRY": str(tmp / "registry.yaml"),
               "PYTHONPATH": str(_REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               "SMARTWARD_LOG_LEVEL": os.environ.get("SMARTWARD_LOG_LEVEL", "WARNING")}
        ports = []
        for i in range(args.workers):
            ports.append(free_port())
            cmd = [sys.executable, "-m", "ingest.cli", "run", "--client-id", f"gwbench-ingest-{i}",
                   "--metrics-port", str(ports[-1]), "--no-migrate"]
            if args.workers > 1:
                cmd += ["--share-group", "gwbench"]
            log = (tmp / f"ingest-{i}.log").open("wb")
            workers.append(subprocess.Popen(cmd, env=env, cwd=_REPO, stderr=log))
        deadline = time.monotonic() + 120
        while not all(metrics_ready(p) for p in ports):
            if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
                print(f"ingest not ready; logs in {tmp}", file=sys.stderr)
                os.environ["SMARTWARD_BENCH_KEEP"] = "1"
                return 1
            time.sleep(0.2)
        report: dict[str, float | int | str] = {
            "gateways": args.gateways, "readings_per_batch": 2 * args.sensors,
            "interval_s": args.interval, "open_files_limit": limit}
        cpu0 = sum(cpu_seconds(w.pid) for w in workers)
        t0 = time.process_time()
        published = asyncio.run(scenario(args, broker, spec, report))
        report["loadgen_cpu_s"] = round(time.process_time() - t0, 1)
        report["ingest_cpu_s"] = round(sum(cpu_seconds(w.pid) for w in workers) - cpu0, 1)
        stored, readings, dup, dead = count_stored(db_url, published)
        made = sum(published.values())
        report["ingest_cpu_us_per_reading"] = round(float(report["ingest_cpu_s"]) / max(1, readings) * 1e6, 1)
        report.update(batches_stored=stored, lost_batches=made - stored, duplicate_batches=dup,
                      readings_stored=readings, dead_letters=dead)
        report["load_average"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        width = max(len(k) for k in report)
        for key, value in report.items():
            print(f"{key:<{width}}  {value}")
        ok = made == stored and dup == 0 and report["not_acked"] == 0 and "error" not in report
        return 0 if ok else 1
    finally:
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)
        for w in workers:
            try:
                w.wait(30)
            except subprocess.TimeoutExpired:
                w.kill()
        broker.stop(kill9=True)
        if server is not None:
            server.close()
        if os.environ.get("SMARTWARD_BENCH_KEEP") != "1":
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
