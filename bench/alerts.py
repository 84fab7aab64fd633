"""``smartward bench alerts``: how fast the rules are, and how long an alert takes end to end.

    smartward bench alerts [--rate 20000] [--seconds 20] [--rules-readings 200000]
                           [--mqtt URL] [--db URL] [--ingest subprocess|thread]

(a) The rule engine alone: readings per second on one core (CPU time), with the default
    rules over the demo registry (``bench.rule_engine.measure_rules``), live batches
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
import time
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from bench.alerts_load import Load, TimedFeed, plan_load
from bench.measure import free_port
from contract.registry import Registry, load_registry

if TYPE_CHECKING:
    from ops_center.adapters.repository import OpsRepository

MAX_SECONDS = 600
MAX_READINGS = 5_000_000
_REPO = Path(__file__).resolve().parents[1]

def pct(values: Sequence[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if q < 100 else max(values)


def open_stores(db_url: str, stack: contextlib.ExitStack) -> OpsRepository:
    """Migrate the readings store and the ops store at ``db_url``; the ops repository, closed
    with ``stack``."""
    from ingest.stores import open_store
    from ops_center.adapters.factory import open_repository

    store = open_store(db_url)
    store.migrate()
    store.close()
    repo = open_repository(db_url)
    stack.callback(repo.close)
    repo.migrate()
    return repo


def start_ingest(mode: str, mqtt_url: str, db_url: str, registry: Registry,
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
    from ops_center.rulebook.loader import load_patterns, load_rules
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
        repo = open_stores(db_url, stack)
        feed = TimedFeed()
        settings = OpsServiceSettings(mqtt_url=mqtt_url, db_url=db_url, ops_session_expiry_s=600)
        service = OpsService(settings, registry, repo, feed, rules=load_rules(registry=registry),
                             patterns=load_patterns(), name=f"bench-{os.getpid()}",
                             client_id=f"smartward-bench-ops-{os.getpid()}")
        service.start()
        stack.callback(service.stop)
        if not service.link.subscribed.wait(30):
            raise TimeoutError("the ops service did not subscribe")
        start_ingest(args.ingest, mqtt_url, db_url, registry, stack, workdir)
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
              f"(n={len(ms)}{f', {missing} not seen' if missing else ''}): p50 {pct(ms, 50):.0f} ms, "
              f"p90 {pct(ms, 90):.0f} ms, p99 {pct(ms, 99):.0f} ms, max {max(ms):.0f} ms")
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
                   help="(b) đo số đo → email / measure reading → email (bench/notify.py)")
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
        from bench.rule_engine import measure_rules

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
            from bench.notify import run_notify_pipeline

            return run_notify_pipeline(args, registry)
        return run_pipeline(args, registry)
    except TimeoutError as exc:
        print(f"    thất bại / failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
