"""``smartward bench ingest``: end-to-end ingest throughput through a REAL Mosquitto.

    python -m bench.ingest [--db URL] [--rate R] [--seconds S] [--batch 100] [--workers N] [--mqtt URL]

Publishes realistic gateway batches (the bundled registry's gateways, sensors and metrics; each
gateway its own seq, unique reading times) at a fixed rate of R readings/s for S seconds, with
ingest workers running as separate processes (as in production), and waits until every batch is
covered by an ack watermark. Prints:

- readings/s committed (readings ÷ time from the first publish to the last ack);
- lag p50/p99 from publish to the ack watermark covering the batch (i.e. committed);
- loss and duplicates, counted in the store's ``ingest_batches`` / ``readings`` tables;
- CPU seconds per process (workers, broker, this publisher);
- the raw binary COPY rate of the same rows into the same database, and the ratio.

Bounded: at most 600 s of publishing, and a drain deadline after it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.ingest_load import AckTracker, CliPublisher, PahoPublisher, Publisher, RowSource
from bench.ingest_store import COPY_ROWS, copy_rate, count_stored, pg_counters, start_mosquitto
from bench.measure import cpu_seconds, free_port, metrics_ready, percentile, postgres_cpu
from bench.pgserver import BenchServer, start_bench_server
from contract import topics
from contract.codec import decode_ack
from contract.registry import load_registry

if TYPE_CHECKING:  # paho-mqtt: imported when the benchmark runs, so --help works without it
    import paho.mqtt.client as mqtt

MAX_SECONDS = 600
MAX_RATE = 2_000_000
MAX_READINGS = 10_000_000  # payloads are made in memory before the run
_REPO = Path(__file__).resolve().parents[1]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="smartward bench ingest", description=__doc__.split("\n\n")[0])
    p.add_argument("--db", default=None, help="store URL (default: a new SQLite file in a temp dir)")
    server = p.add_mutually_exclusive_group()
    server.add_argument("--timescale", action="store_true",
                        help="start a private TimescaleDB server (fsync on) and use a new database on it")
    server.add_argument("--postgres", action="store_true",
                        help="start a private plain PostgreSQL (fsync on) and use a new database on it")
    p.add_argument("--pg-setting", action="append", default=[], metavar="NAME=VALUE",
                   help="with --timescale/--postgres: a server setting (repeatable)")
    p.add_argument("--pg-defaults", action="store_true",
                   help="with --timescale/--postgres: PostgreSQL's defaults, not our recommended settings")
    p.add_argument("--mqtt", default=None, help="broker URL (default: start Mosquitto on a free port)")
    p.add_argument("--rate", type=float, default=20_000, help="readings per second offered")
    p.add_argument("--seconds", type=float, default=10, help="seconds of publishing")
    p.add_argument("--batch", type=int, default=100, help="readings per MQTT batch")
    p.add_argument("--workers", type=int, default=1,
                   help="ingest worker processes (shared subscription if > 1)")
    p.add_argument("--drain-timeout", type=float, default=120, help="seconds to wait for the last acks")
    p.add_argument("--publisher", choices=("paho", "mosquitto_pub"), default="paho",
                   help="paho in this process (as the edge), or one mosquitto_pub -l per gateway (C)")
    p.add_argument("--batch-max-messages", type=int, default=None, help="worker: messages per transaction")
    p.add_argument("--receive-maximum", type=int, default=None, help="worker: MQTT receive maximum")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(argv) if argv is not None else None)
    bad = args.seconds > MAX_SECONDS or args.rate > MAX_RATE or args.rate <= 0 or args.batch < 1
    if bad or args.rate * args.seconds > MAX_READINGS:
        print(f"--seconds ≤ {MAX_SECONDS}, 0 < --rate ≤ {MAX_RATE}, --batch ≥ 1, "
              f"rate × seconds ≤ {MAX_READINGS}", file=sys.stderr)
        return 2
    from ingest.cli import open_store

    tmp = Path(tempfile.mkdtemp(prefix="smartward-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    broker: subprocess.Popen[bytes] | None = None
    server: BenchServer | None = None
    pg_pid: int | None = None
    try:
        if args.timescale or args.postgres:
            server = start_bench_server("timescaledb" if args.timescale else "postgresql",
                                        {} if args.pg_defaults else None, args.pg_setting)
            args.db = server.create_db("swbench")
            pg_pid = server.postmaster_pid()
            print(f"server         {server.version} on port {server.port} (private, fsync on; "
                  f"{'defaults' if args.pg_defaults else 'recommended settings'}"
                  f"{'; ' + ', '.join(args.pg_setting) if args.pg_setting else ''})")
        if args.mqtt:
            mqtt_url = args.mqtt
        else:
            broker, mqtt_url = start_mosquitto(tmp)
        db_url = args.db or f"sqlite:///{tmp / 'bench.db'}"
        store = open_store(db_url)
        store.migrate()
        store.close()

        registry = load_registry()
        env = {**os.environ, "SMARTWARD_MQTT_URL": mqtt_url, "SMARTWARD_DB_URL": db_url,
               "PYTHONPATH": str(_REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               "SMARTWARD_LOG_LEVEL": os.environ.get("SMARTWARD_LOG_LEVEL", "WARNING")}
        if args.batch_max_messages:
            env["SMARTWARD_BATCH_MAX_MESSAGES"] = str(args.batch_max_messages)
        if args.receive_maximum:
            env["SMARTWARD_RECEIVE_MAXIMUM"] = str(args.receive_maximum)
        ports = []
        run_id = f"bench-{os.getpid()}-{int(time.time())}"
        for i in range(args.workers):
            port = free_port()
            ports.append(port)
            cmd = [sys.executable, "-m", "ingest.cli", "run", "--client-id", f"{run_id}-{i}",
                   "--metrics-port", str(port), "--no-migrate"]
            if args.workers > 1:
                cmd += ["--share-group", "bench"]
            log = (tmp / f"worker-{i}.log").open("wb")
            procs.append(subprocess.Popen(cmd, env=env, stderr=log, cwd=_REPO))
        deadline = time.monotonic() + 30
        for port in ports:
            while not metrics_ready(port):
                if time.monotonic() > deadline:
                    raise SystemExit(f"worker not ready; see {tmp}")
                time.sleep(0.1)

        tracker = AckTracker()

        from contract.brokers import BrokerUrl
        from mqttlink.client import SessionOptions, connected_client

        broker_url = BrokerUrl.parse(mqtt_url)
        acks = connected_client(broker_url, SessionOptions(client_id=f"{run_id}-acks"))

        def on_ack(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
            tracker.on_ack(topics.parse(msg.topic).gateway, decode_ack(bytes(msg.payload)).seq)

        acks.on_message = on_ack
        acks.subscribe(topics.subscription("ack"), qos=1)
        acks.loop_start()
        source = RowSource(registry, args.batch, datetime.now(UTC).replace(microsecond=0) - timedelta(days=1))
        interval = args.batch / args.rate
        n_batches = int(args.rate * args.seconds / args.batch)
        published: dict[str, int] = {}
        # Payloads are made before the clock starts, so that the publisher's JSON encoding does
        # not compete with the ingest for this machine's cores during the measurement.
        batches = [source.next_batch() for _ in range(n_batches)]
        ready_batches = [(topics.telemetry(f.site, f.gateway), f.gateway, seq, payload)
                         for f, seq, payload in batches]
        del batches
        pub: Publisher
        if args.publisher == "mosquitto_pub":
            pub = CliPublisher(broker_url.host, broker_url.port, run_id, {t for t, *_ in ready_batches})
        else:
            pub = PahoPublisher(broker_url.host, broker_url.port, run_id)
        cpu0 = {p.pid: cpu_seconds(p.pid) for p in procs}
        broker_cpu0 = cpu_seconds(broker.pid) if broker else float("nan")
        pg_cpu0 = postgres_cpu(pg_pid)
        is_pg = not db_url.startswith("sqlite")
        wal0, ckpt0 = pg_counters(db_url) if is_pg else (0, 0)
        self_cpu0 = time.process_time() + pub.cpu_seconds()
        print(f"đang gửi / publishing {len(ready_batches)} batches for {args.seconds:g} s", file=sys.stderr,
              flush=True)
        t_start = time.monotonic()
        for k, (topic, gateway, seq, payload) in enumerate(ready_batches):
            due = t_start + k * interval
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # pacing the offered load, not waiting for a result
            tracker.published(gateway, seq, time.monotonic())
            pub.publish(topic, payload)
            published[gateway] = seq
        pub.flush()
        t_published = time.monotonic()
        print("đang chờ xác nhận / waiting for the acks", file=sys.stderr, flush=True)
        with tracker.done:
            tracker.done.wait_for(lambda: tracker.outstanding() == 0, timeout=args.drain_timeout)
        drained = tracker.outstanding() == 0
        # A drain that timed out is measured to its deadline, not to the last ack seen.
        t_end = (tracker.last_ack if drained else None) or time.monotonic()
        cpu = {p.pid: cpu_seconds(p.pid) - cpu0[p.pid] for p in procs}
        broker_cpu = cpu_seconds(broker.pid) - broker_cpu0 if broker else float("nan")
        self_cpu = time.process_time() + pub.cpu_seconds() - self_cpu0
        pg_cpu = postgres_cpu(pg_pid) - pg_cpu0
        wal1, ckpt1 = pg_counters(db_url) if is_pg else (0, 0)
        pub.close()
        acks.disconnect()
        acks.loop_stop()
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(60)

        total_batches = sum(published.values())
        total_readings = total_batches * args.batch
        stored_batches, readings, dup, dead = count_stored(db_url, published)
        elapsed = t_end - t_start
        # Rows actually in the store: a run whose drain timed out committed less than it published.
        committed = min(readings, total_readings)
        lat = tracker.latencies
        print(f"offered        {args.rate:,.0f} readings/s for {args.seconds:g} s "
              f"({n_batches} batches of {args.batch}, {len(source.feeds)} gateways), publish took "
              f"{t_published - t_start:.2f} s")
        print(f"committed      {committed / elapsed:,.0f} readings/s "
              f"({committed} of {total_readings} readings stored in {elapsed:.2f} s, first publish to "
              f"{'last ack' if drained else 'the drain deadline: NOT DRAINED'})")
        p50, p99 = percentile(lat, 50) * 1000, percentile(lat, 99) * 1000
        print(f"lag to ack     p50 {p50:.1f} ms   p99 {p99:.1f} ms")
        print(f"loss           {total_batches - stored_batches} batches, "
              f"{total_readings - readings} readings; not acked: {tracker.outstanding()}")
        extra = max(0, readings - total_readings)
        print(f"duplicates     {dup} batch rows, {extra} readings; dead letters {dead}")
        print("cpu seconds    " + "  ".join(f"worker{i} {cpu[p.pid]:.2f}" for i, p in enumerate(procs))
              + f"  mosquitto {broker_cpu:.2f}  publisher {self_cpu:.2f}"
              + (f"  postgres{'' if pg_pid else '(all local)'} {pg_cpu:.2f}" if is_pg else ""))
        if committed:
            per = 1e6 / committed
            workers_cpu = sum(cpu.values())
            pg_part = f"  postgres {pg_cpu * per:.2f} us" if is_pg else ""
            print(f"cpu per reading  workers {workers_cpu * per:.2f} us  mosquitto {broker_cpu * per:.2f} us"
                  f"  publisher {self_cpu * per:.2f} us{pg_part}")
        if is_pg and committed:
            print(f"postgres       WAL {(wal1 - wal0) / committed:.0f} bytes per reading, "
                  f"{ckpt1 - ckpt0} checkpoint(s) during the run")
        totals = {f.gateway: f.counter for f in source.feeds}
        rows = list(source.rows(registry, totals))
        copy = copy_rate(db_url, rows, pg_pid)
        kind = "executemany (SQLite)" if db_url.startswith("sqlite") else "COPY BINARY"
        how = f" ({COPY_ROWS} per transaction, a table like readings)" if is_pg else ""
        print(f"raw {kind}  {copy:,.0f} rows/s of the same {len(rows)} rows{how}; "
              f"ingest/raw = {committed / elapsed / copy:.2f}")
        print(f"load average   {' '.join(f'{x:.2f}' for x in os.getloadavg())} (after the run)")
        ok = tracker.outstanding() == 0 and stored_batches == total_batches and readings == total_readings
        return 0 if ok else 1
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        if broker is not None:
            broker.kill()
            broker.wait(10)
        if server is not None:
            server.close()
        if os.environ.get("SMARTWARD_BENCH_KEEP") != "1":
            shutil.rmtree(tmp, ignore_errors=True)




if __name__ == "__main__":
    sys.exit(main())
