"""``smartward bench alerts``: how fast the rules are, and how long an alert takes end to end.

    smartward bench alerts [--rate 20000] [--seconds 20] [--rules-readings 200000]
                           [--mqtt URL] [--db URL] [--ingest subprocess|thread]

(a) The rule engine alone: readings per second on one core (CPU time), with the default
    rules over the demo registry (``ops_center.domain.bench.measure_rules``), live batches
    (one reading per series) and backlog batches (ten per series).

(b) The whole pipeline under a steady load: realistic telemetry of every gateway (the
    simulators, over a window of simulated time that the run replays at ``--rate`` readings
    per second) published QoS 1 to a broker (a private Mosquitto with the shipped configuration
    unless ``--mqtt``), stored by the ingest (its own process, as in production) in the store
    (SQLite unless ``--db``; PostgreSQL/TimescaleDB with a URL) and evaluated by the ops
    service. Some readings are made to cross the combustible-gas alarm (a 50 %LEL reading on a
    detector) at known times; for each, the latency from the publication of its batch to its
    alert being stored AND published on the live-stream feed (the service publishes after the
    store has the row) is measured. Printed: p50/p90/p99/max, and how far behind the ingest and
    the ops service finished.

Bounded: at most 600 s of load and 5 million readings (payloads are made before the run), and
a drain deadline after it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contract import topics
from contract.brokers import BrokerUrl
from contract.codec import decode_ack, encode
from contract.models import Reading, TelemetryBatch
from contract.registry import Registry, load_registry
from ops_center.feed import EventKind, Feed, FeedEvent

if TYPE_CHECKING:  # paho-mqtt: imported when the benchmark runs, so --help works without it
    import paho.mqtt.client as mqtt

MAX_SECONDS = 600
MAX_READINGS = 5_000_000
WINDOW_S = 300.0  # simulated seconds per batch and gateway (under the 600 s lateness limit)
GAS_SENSORS = ("ax-gas-01", "ax-gas-02", "ax-gas-03", "ax-gas-04")
INJECT_LEL = 50.0
_REPO = Path(__file__).resolve().parents[1]


class TimedFeed(Feed):
    """The live-stream feed, noting when each alert of a gas detector reaches it."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[tuple[str, float], float] = {}
        self._seen_lock = threading.Lock()

    def publish(self, kind: EventKind, site: str | None, data: Mapping[str, object]) -> FeedEvent:
        event = super().publish(kind, site, data)
        if kind == "alert":
            alert = data.get("alert")
            if isinstance(alert, dict) and alert.get("sensor") in GAS_SENSORS and data.get("action") in (
                    "raised", "reopened", "escalated"):
                at = datetime.fromisoformat(str(alert["updated_at"]).replace("Z", "+00:00"))
                key = (str(alert["sensor"]), at.timestamp())
                with self._seen_lock:
                    self.seen.setdefault(key, time.monotonic())
        return event


@dataclass(frozen=True, slots=True)
class Planned:
    topic: str
    gateway: str
    seq: int
    readings: int
    payload: bytes
    due_s: float  # seconds after the start of the load
    injected: tuple[tuple[str, float], ...]  # (sensor, epoch s) of the threshold crossings inside


def plan_load(registry: Registry, rate: float, seconds: float, *, inject_every_s: float,
              start: datetime) -> list[Planned]:
    """Batches of every gateway over a window of simulated time, with gas alarms injected
    every ``inject_every_s`` simulated seconds, each due when the cumulated readings reach
    ``rate`` per second."""
    from simulators.fleet import fleet

    per_sim_s = sum(len(s.metrics) / s.interval_s for _, gw in registry.iter_gateways() for s in gw.sensors)
    sim_s = rate * seconds / per_sim_s
    sims = fleet(registry, seed=7, start=start)
    batches: list[tuple[float, str, str, list[Reading]]] = []
    inject_at = {start.timestamp() + k * inject_every_s: GAS_SENSORS[k % len(GAS_SENSORS)]
                 for k in range(1, int(sim_s // inject_every_s) + 1)}
    steps = int(sim_s // WINDOW_S) + 1
    for site, gw in registry.iter_gateways():
        sim = sims[gw.id]
        for k in range(1, steps + 1):
            until = start + timedelta(seconds=k * WINDOW_S)
            rs = sim.advance(until)
            if rs:
                batches.append((until.timestamp(), site.id, gw.id, rs))
    batches.sort(key=lambda b: b[0])
    total = sum(len(b[3]) for b in batches)
    out: list[Planned] = []
    seqs: dict[str, int] = {}
    cumulated = 0
    pending_inject = sorted(inject_at.items())
    for end_ts, site_id, gw_id, rs in batches:
        injected: list[tuple[str, float]] = []
        readings: list[Reading] = []
        for r in rs:
            reading = r
            if r.sensor in GAS_SENSORS and r.metric == "gas_lel":
                ts = r.ts.timestamp()
                hit = next(((t, s) for t, s in pending_inject if s == r.sensor and t <= ts), None)
                if hit is not None:
                    pending_inject.remove(hit)
                    reading = Reading(r.sensor, r.metric, r.ts, INJECT_LEL, r.quality)
                    injected.append((r.sensor, ts))
            readings.append(reading)
        seqs[gw_id] = seqs.get(gw_id, 0) + 1
        sent = datetime.fromtimestamp(end_ts, UTC)
        payload = encode(TelemetryBatch(v=1, gateway=gw_id, seq=seqs[gw_id], sent_at=sent, readings=readings))
        cumulated += len(readings)
        out.append(Planned(topics.telemetry(site_id, gw_id), gw_id, seqs[gw_id], len(readings), payload,
                           cumulated / rate if total else 0.0, tuple(injected)))
    return out


class Load:
    """Publishes the plan on time from one thread; watches the ack watermarks."""

    def __init__(self, url: str, registry: Registry) -> None:
        from mqttlink.client import SessionOptions, connect, new_client

        b = BrokerUrl.parse(url)
        options = SessionOptions(client_id=f"smartward-bench-{os.getpid()}")
        self.client = new_client(b, options)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.on_message = self._on_ack
        self.client.on_connect = lambda c, *_a: c.subscribe(topics.subscription("ack"), qos=1)
        self.marks: dict[str, int] = {}
        self.cond = threading.Condition()
        self.published_at: dict[tuple[str, float], float] = {}
        self.first_s = 0.0
        self.last_s = 0.0
        self.behind_max_s = 0.0
        connect(self.client, b, options)
        self.client.loop_start()
        self.registry = registry

    def _on_ack(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            gw = topics.parse(msg.topic).gateway
            seq = decode_ack(bytes(msg.payload)).seq if msg.payload else 0
        except Exception:  # a foreign retained message: not ours to judge
            return
        with self.cond:
            self.marks[gw] = max(self.marks.get(gw, 0), seq)
            self.cond.notify_all()

    def run(self, plan: Sequence[Planned]) -> None:
        t0 = time.monotonic()
        self.first_s = t0
        infos = []
        for p in plan:
            delay = t0 + p.due_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # pacing the load, not a synchronisation
            else:
                self.behind_max_s = max(self.behind_max_s, -delay)
            now = time.monotonic()
            for key in p.injected:
                self.published_at[key] = now
            infos.append(self.client.publish(p.topic, p.payload, qos=1))
        for info in infos[-1000:]:
            info.wait_for_publish(timeout=30)
        self.last_s = time.monotonic()

    def warm_up(self, first: Planned, timeout_s: float = 30.0) -> None:
        """Publish the first batch until the ingest acknowledges it: its subscription is then
        granted (the load's own copy of that batch is a duplicate, a no-op everywhere)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.client.publish(first.topic, first.payload, qos=1)
            with self.cond:
                if self.cond.wait_for(lambda: self.marks.get(first.gateway, 0) >= first.seq, timeout=1.0):
                    return
        raise TimeoutError("the ingest never acknowledged the first batch")

    def wait_acks(self, last: Mapping[str, int], timeout_s: float) -> float:
        with self.cond:
            ok = self.cond.wait_for(lambda: all(self.marks.get(g, 0) >= s for g, s in last.items()),
                                    timeout=timeout_s)
        if not ok:
            raise TimeoutError(f"ingest did not store everything in {timeout_s:.0f} s: {self.marks} < {last}")
        return time.monotonic()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _pct(values: Sequence[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if q < 100 else max(values)


def _start_ingest(mode: str, mqtt_url: str, db_url: str, registry: Registry,
                  stack: contextlib.ExitStack, workdir: Path) -> None:
    if mode == "thread":
        from ingest.settings import IngestSettings
        from ingest.stores import open_store
        from ingest.worker import IngestWorker

        store = open_store(db_url)
        stack.callback(store.close)
        worker = IngestWorker(IngestSettings(mqtt_url=mqtt_url, db_url=db_url, session_expiry_s=600),
                              store, registry, client_id=f"smartward-bench-ingest-{os.getpid()}")
        subscribed = worker.source.subscribed
        worker.start()
        stack.callback(worker.stop)
        if not subscribed.wait(30):
            raise TimeoutError("the ingest did not subscribe")
        return
    from smartward.stack import free_port

    port = free_port()
    env = {**os.environ, "SMARTWARD_MQTT_URL": mqtt_url, "SMARTWARD_DB_URL": db_url,
           "SMARTWARD_SESSION_EXPIRY_S": "600",
           "SMARTWARD_CLIENT_ID": f"smartward-bench-ingest-{os.getpid()}",
           "PYTHONPATH": str(_REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "SMARTWARD_LOG_LEVEL": os.environ.get("SMARTWARD_LOG_LEVEL", "WARNING")}
    log = (workdir / "ingest.log").open("ab")
    stack.callback(log.close)
    proc = subprocess.Popen([sys.executable, "-m", "ingest.cli", "run", "--metrics-port", str(port),
                             "--no-migrate"], env=env, stdout=log, stderr=log)

    def stop() -> None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    stack.callback(stop)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # a process's readiness over HTTP: a bounded poll
        if proc.poll() is not None:
            raise RuntimeError(f"the ingest exited with {proc.returncode}; see {workdir / 'ingest.log'}")
        with contextlib.suppress(OSError), urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz",
                                                                  timeout=1) as r:
            if r.status == 200:
                return  # connected; Load.warm_up proves the subscription
        time.sleep(0.1)
    raise TimeoutError("the ingest was not ready in 30 s")


def run_pipeline(args: argparse.Namespace, registry: Registry) -> int:
    from ingest.stores import open_store
    from ops_center.adapters.repository import open_repository
    from ops_center.rules.loader import load_patterns, load_rules
    from ops_center.service.service import OpsService
    from ops_center.service.settings import OpsServiceSettings
    from smartward.stack import MosquittoBroker

    start = (datetime.now(UTC) - timedelta(days=3)).replace(second=0, microsecond=0)
    t_plan = time.monotonic()
    plan = plan_load(registry, args.rate, args.seconds, inject_every_s=args.inject_every_s, start=start)
    n_readings = sum(p.readings for p in plan)
    injections = sum(len(p.injected) for p in plan)
    print(f"    kế hoạch / plan: {n_readings:,} số đo / readings in {len(plan):,} lô / batches, "
          f"{injections} ngưỡng khí cháy / gas alarms injected (made in {time.monotonic() - t_plan:.1f} s)",
          flush=True)
    last: dict[str, int] = {}
    for p in plan:
        last[p.gateway] = max(last.get(p.gateway, 0), p.seq)
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="smartward-bench-alerts-")))
        if args.mqtt:
            mqtt_url, broker_name = args.mqtt, args.mqtt.rsplit("@", 1)[-1]
        else:
            broker = MosquittoBroker(workdir / "broker").start()
            stack.callback(broker.stop)
            mqtt_url, broker_name = broker.url, "Mosquitto (riêng / private, shipped config)"
        db_url = args.db or f"sqlite:///{workdir / 'bench.db'}"
        store = open_store(db_url)
        store.migrate()
        store.close()
        repo = open_repository(db_url)
        stack.callback(repo.close)
        repo.migrate()
        feed = TimedFeed()
        settings = OpsServiceSettings(mqtt_url=mqtt_url, db_url=db_url, ops_session_expiry_s=600)
        service = OpsService(settings, registry, repo, feed, rules=load_rules(registry=registry),
                             patterns=load_patterns(), name=f"bench-{os.getpid()}",
                             client_id=f"smartward-bench-ops-{os.getpid()}")
        service.start()
        stack.callback(service.stop)
        if not service.link.subscribed.wait(30):
            raise TimeoutError("the ops service did not subscribe")
        _start_ingest(args.ingest, mqtt_url, db_url, registry, stack, workdir)
        load = Load(mqtt_url, registry)
        stack.callback(load.close)
        print(f"    {broker_name}; ingest ({args.ingest}) + ops service; {db_url.split(':', 1)[0]}",
              flush=True)
        load.warm_up(plan[0])
        cpu0 = time.process_time()
        load.run(plan)
        published_s = load.last_s - load.first_s
        drain = max(60.0, args.seconds * 3)
        service.wait_until(lambda p: all(p.through.get(g, 0) >= s for g, s in last.items()), drain)
        ops_done = time.monotonic()
        stored_done = load.wait_acks(last, drain)
        cpu = time.process_time() - cpu0
    lat = sorted(feed.seen[k] - t for k, t in load.published_at.items() if k in feed.seen)
    missing = len(load.published_at) - len(lat)
    print(f"    tải / load: {n_readings / published_s:,.0f} số đo/s / readings/s published "
          f"({n_readings:,} in {published_s:.1f} s; lịch trễ tối đa / schedule slip max "
          f"{load.behind_max_s:.2f} s)")
    print(f"    ingest: đã lưu hết sau / all stored {stored_done - load.last_s:+.2f} s "
          f"after the last publish → {n_readings / (stored_done - load.first_s):,.0f} readings/s")
    print(f"    ops: đã đánh giá hết sau / all evaluated {ops_done - load.last_s:+.2f} s "
          f"after the last publish; CPU of this process (ops + load) {cpu:.1f} s")
    if lat:
        ms = [x * 1000 for x in lat]
        print(f"    công bố → cảnh báo đã lưu và lên luồng / publish → alert stored and on the feed "
              f"(n={len(ms)}{f', {missing} not seen' if missing else ''}): p50 {_pct(ms, 50):.0f} ms, "
              f"p90 {_pct(ms, 90):.0f} ms, p99 {_pct(ms, 99):.0f} ms, max {max(ms):.0f} ms")
    else:
        print("    no injected alert reached the feed", file=sys.stderr)
        return 1
    return 0 if not missing else 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="smartward bench alerts",
                                description="Đo hiệu năng cảnh báo / alert benchmarks")
    p.add_argument("--rules-readings", type=int, default=200_000,
                   help="(a) số đo cho phép đo quy tắc / readings for the rules-alone measure")
    p.add_argument("--rate", type=float, default=20_000, help="(b) số đo/giây / readings per second")
    p.add_argument("--seconds", type=float, default=20, help="(b) thời gian tải / load duration, s")
    p.add_argument("--inject-every-s", type=float, default=900.0,
                   help="(b) một ngưỡng khí mỗi … giây mô phỏng / one gas alarm every … simulated s")
    p.add_argument("--mqtt", help="(b) broker URL (default: a private Mosquitto)")
    p.add_argument("--db", help="(b) SMARTWARD_DB_URL (default: SQLite in a temporary directory); use an "
                                "EMPTY database")
    p.add_argument("--ingest", choices=("subprocess", "thread"), default="subprocess",
                   help="(b) ingest in its own process (default, as in production) or a thread")
    p.add_argument("--notify", action="store_true",
                   help="(b) đo số đo → email / measure reading → email (smartward/bench_notify.py)")
    p.add_argument("--skip-rules", action="store_true", help="bỏ (a) / skip (a)")
    p.add_argument("--skip-pipeline", action="store_true", help="bỏ (b) / skip (b)")
    return p


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    if not (0 < args.seconds <= MAX_SECONDS and args.rate > 0 and args.rate * args.seconds <= MAX_READINGS
            and args.inject_every_s >= 60 and args.rules_readings > 0):
        print(f"0 < --seconds ≤ {MAX_SECONDS}, --rate > 0, rate × seconds ≤ {MAX_READINGS:,}, "
              "--inject-every-s ≥ 60", file=sys.stderr)
        return 2
    registry = load_registry(os.environ.get("SMARTWARD_REGISTRY") or None)
    print("smartward bench alerts")
    if not args.skip_rules:
        from ops_center.domain.bench import measure_rules

        live = measure_rules(args.rules_readings, per_series=1, registry=registry)
        backlog = measure_rules(args.rules_readings, per_series=10, registry=registry)
        print(f"(a) quy tắc, một lõi / rules alone, one core (CPU time): {live:,.0f} readings/s live "
              f"(1 per series per batch), {backlog:,.0f} readings/s backlog (10 per series)", flush=True)
    if args.skip_pipeline:
        return 0
    print(f"(b) toàn hệ thống / whole pipeline at {args.rate:,.0f} readings/s for {args.seconds:g} s",
          flush=True)
    try:
        if args.notify:
            from smartward.bench_notify import run_notify_pipeline

            return run_notify_pipeline(args, registry)
        return run_pipeline(args, registry)
    except TimeoutError as exc:
        print(f"    thất bại / failed: {exc}", file=sys.stderr)
        return 1
