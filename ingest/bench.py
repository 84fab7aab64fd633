"""``smartward bench ingest``: end-to-end ingest throughput through a REAL Mosquitto.

    python -m ingest.bench [--db URL] [--rate R] [--seconds S] [--batch 100] [--workers N] [--mqtt URL]

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
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from contract import topics
from contract.codec import decode_ack
from contract.registry import Registry, load_registry
from ingest.benchserver import BenchServer, start_bench_server

if TYPE_CHECKING:  # paho-mqtt: imported when the benchmark runs, so --help works without it
    import paho.mqtt.client as mqtt

MAX_SECONDS = 600
MAX_RATE = 2_000_000
MAX_READINGS = 10_000_000  # payloads are made in memory before the run
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_REPO = Path(__file__).resolve().parents[1]
_COPY_ROWS = 10_000  # rows per transaction of the raw COPY reference


@dataclass
class GatewayFeed:
    site: str
    gateway: str
    pairs: list[tuple[str, str]]
    seq: int = 0
    counter: int = 0


class RowSource:
    """Deterministic batches: the same rows can be produced again for the COPY comparison."""

    def __init__(self, registry: Registry, batch: int, base: datetime) -> None:
        self.feeds = [
            GatewayFeed(site.id, gw.id, [(s.id, m) for s in gw.sensors for m in s.metrics])
            for site, gw in registry.iter_gateways() if gw.sensors
        ]
        self.batch = batch
        self.base = base
        self._i = 0
        self._enc = msgspec.json.Encoder()

    def next_batch(self) -> tuple[GatewayFeed, int, bytes]:
        feed = self.feeds[self._i % len(self.feeds)]
        self._i += 1
        feed.seq += 1
        readings = []
        base = self.base
        for _ in range(self.batch):
            sensor, metric = feed.pairs[feed.counter % len(feed.pairs)]
            # every (sensor, metric) gets a new millisecond: unique (sensor, metric, time)
            ts = base + timedelta(milliseconds=feed.counter)
            feed.counter += 1
            readings.append({"sensor": sensor, "metric": metric, "ts": ts.isoformat(),
                             "value": round((feed.counter % 1000) * 0.1, 1)})
        payload = self._enc.encode({"v": 1, "gateway": feed.gateway, "seq": feed.seq,
                                    "sent_at": datetime.now(UTC).isoformat(), "readings": readings})
        return feed, feed.seq, payload

    def rows(self, registry: Registry, totals: dict[str, int]) -> Iterator[tuple[Any, ...]]:
        """The same reading rows as published: ``totals`` is readings per gateway."""
        for feed in self.feeds:
            for c in range(totals.get(feed.gateway, 0)):
                sensor, metric = feed.pairs[c % len(feed.pairs)]
                yield (self.base + timedelta(milliseconds=c), feed.site, feed.gateway, sensor, metric,
                       round(((c + 1) % 1000) * 0.1, 1), "good")


@dataclass
class AckTracker:
    sent: dict[str, dict[int, float]] = field(default_factory=dict)
    acked: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    last_ack: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.done = threading.Condition(self.lock)

    def published(self, gateway: str, seq: int, at: float) -> None:
        with self.lock:
            self.sent.setdefault(gateway, {})[seq] = at

    def on_ack(self, gateway: str, seq: int) -> None:
        now = time.monotonic()
        with self.lock:
            prev = self.acked.get(gateway, 0)
            if seq <= prev:
                return
            sent = self.sent.get(gateway, {})
            for s in range(prev + 1, seq + 1):
                t = sent.pop(s, None)
                if t is not None:
                    self.latencies.append(now - t)
            self.acked[gateway] = seq
            self.last_ack = now
            self.done.notify_all()

    def outstanding(self) -> int:
        return sum(len(v) for v in self.sent.values())


class _Publisher:
    def publish(self, topic: str, payload: bytes) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        """Everything published so far is on its way."""

    def cpu_seconds(self) -> float:
        """CPU of publishing processes other than this one."""
        return 0.0

    def close(self) -> None:
        raise NotImplementedError


class _PahoPublisher(_Publisher):
    """paho in this process, as the edge agent publishes (about 50-90 µs of CPU a message)."""

    def __init__(self, host: str, port: int, run_id: str) -> None:
        from contract.brokers import BrokerUrl
        from mqttlink.client import SessionOptions, connect, new_client

        url, options = BrokerUrl(host, port), SessionOptions(client_id=f"{run_id}-pub")
        self.client = new_client(url, options)
        self.client.max_inflight_messages_set(1000)
        connect(self.client, url, options)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class _CliPublisher(_Publisher):
    """One ``mosquitto_pub -l -q 1`` (C, libmosquitto) per topic, fed a line per message:
    takes the publisher's own Python cost out of a run that measures the ingest per message."""

    def __init__(self, host: str, port: int, run_id: str, topic_names: set[str]) -> None:
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        for i, topic in enumerate(sorted(topic_names)):
            self.procs[topic] = subprocess.Popen(
                ["mosquitto_pub", "-h", host, "-p", str(port), "-q", "1", "-M", "1000", "-l",
                 "-i", f"{run_id}-pub{i}", "-t", topic], stdin=subprocess.PIPE)

    def publish(self, topic: str, payload: bytes) -> None:
        stdin = self.procs[topic].stdin
        assert stdin is not None and b"\n" not in payload
        stdin.write(payload + b"\n")
        stdin.flush()

    def cpu_seconds(self) -> float:
        return sum(_cpu_seconds(p.pid) for p in self.procs.values())

    def close(self) -> None:
        for p in self.procs.values():
            if p.stdin is not None:
                p.stdin.close()
        for p in self.procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


def _percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK
    except (OSError, IndexError, ValueError):
        return float("nan")


def _postgres_cpu(postmaster: int | None = None) -> float:
    """CPU seconds of the server under test: with a private server its postmaster (including
    the children it has reaped) and its live children; otherwise every local process named
    postgres (other local servers' load counts too then)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if "(postgres)" not in text:
            continue
        fields = text.rsplit(")", 1)[1].split()
        pid, ppid = int(stat.parent.name), int(fields[1])
        if postmaster is None:
            total += (int(fields[11]) + int(fields[12])) / _CLK_TCK
        elif pid == postmaster:
            total += sum(int(f) for f in fields[11:15]) / _CLK_TCK
        elif ppid == postmaster:
            total += (int(fields[11]) + int(fields[12])) / _CLK_TCK
    return total


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"port {port} did not open")


def _start_mosquitto(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    shipped = sorted((_REPO / "deploy" / "mosquitto").glob("*.conf")) if (_REPO / "deploy").exists() else []
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false",
             "max_queued_messages 1000000", "max_queued_bytes 0", "max_inflight_messages 0"]
    if shipped:
        # reuse the shipped limits, not its listeners, auth or persistence paths
        keep = ("max_queued_messages", "max_queued_bytes", "max_inflight_messages", "message_size_limit",
                "max_packet_size")
        kept = [ln.strip() for ln in shipped[0].read_text().splitlines() if ln.strip().startswith(keep)]
        if kept:
            lines = lines[:3] + kept
    conf = tmp / "mosquitto.conf"
    conf.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=(tmp / "mosquitto.log").open("wb"))
    _wait_port(port, 10)
    return proc, f"mqtt://127.0.0.1:{port}"


def _count(db_url: str, published: dict[str, int]) -> tuple[int, int, int, int]:
    """(batches stored or dead-lettered among published, readings, duplicate batch rows, dead letters)."""
    if db_url.startswith("sqlite"):
        path = db_url.split("sqlite:///", 1)[1]
        con = sqlite3.connect(path)
        try:
            return _count_sql(con.execute, published)
        finally:
            con.close()
    import psycopg

    with psycopg.connect(db_url) as pg:
        def execute(q: str, params: Sequence[Any] = ()) -> Any:
            return pg.execute(q.replace("?", "%s"), params)
        return _count_sql(execute, published)


def _count_sql(execute: Any, published: dict[str, int]) -> tuple[int, int, int, int]:
    stored = 0
    for gw, n in published.items():
        stored += execute("SELECT count(DISTINCT seq) FROM ingest_batches WHERE gateway = ? AND seq <= ?",
                          (gw, n)).fetchone()[0]
    readings = execute("SELECT count(*) FROM readings").fetchone()[0]
    dup = execute("SELECT count(*) - count(DISTINCT gateway || ':' || seq) FROM ingest_batches").fetchone()[0]
    dead = execute("SELECT count(*) FROM dead_letters").fetchone()[0]
    return int(stored), int(readings), int(dup), int(dead)


def _copy_rate(db_url: str, rows: list[tuple[Any, ...]], pg_pid: int | None) -> float:
    """Rows/s of the plainest bulk load of the same rows into the same database."""
    if db_url.startswith("sqlite"):
        path = db_url.split("sqlite:///", 1)[1]
        con = sqlite3.connect(path)
        try:
            con.execute("DROP TABLE IF EXISTS bench_copy")
            con.execute("CREATE TABLE bench_copy (time TEXT, site TEXT, gateway TEXT, sensor TEXT, "
                        "metric TEXT, value REAL, quality TEXT, UNIQUE (sensor, metric, time))")
            data = [(r[0].isoformat(), *r[1:]) for r in rows]
            t0 = time.perf_counter()
            with con:
                con.executemany("INSERT INTO bench_copy VALUES (?,?,?,?,?,?,?)", data)
            dt = time.perf_counter() - t0
            con.execute("DROP TABLE bench_copy")
            return len(rows) / dt
        finally:
            con.close()
    import psycopg

    with psycopg.connect(db_url) as pg:
        # The same physical table as `readings` (columns, unique key, indexes; a hypertable
        # under TimescaleDB), loaded the plainest way: binary COPY, 10k rows per transaction.
        pg.execute("DROP TABLE IF EXISTS bench_copy")
        pg.execute("CREATE TABLE bench_copy (LIKE readings INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
                   "INCLUDING INDEXES)")
        if pg.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone():
            pg.execute("SELECT create_hypertable('bench_copy', 'time', "
                       "chunk_time_interval => INTERVAL '1 day', create_default_indexes => false)")
        pg.commit()
        cpu0 = _postgres_cpu(pg_pid)
        t0 = time.perf_counter()
        for start in range(0, len(rows), _COPY_ROWS):
            with pg.cursor() as cur, cur.copy(
                    "COPY bench_copy (time, site, gateway, sensor, metric, value, quality, batch_id) "
                    "FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["timestamptz", "text", "text", "text", "text", "float8", "text", "int8"])
                for i, r in enumerate(rows[start:start + _COPY_ROWS], start):
                    copy.write_row((*r, i // 100))
            pg.commit()
        dt = time.perf_counter() - t0
        cpu = _postgres_cpu(pg_pid) - cpu0
        pg.execute("DROP TABLE bench_copy")
        pg.commit()
        print(f"raw COPY       postgres {cpu / len(rows) * 1e6:.2f} us CPU per row")
        return len(rows) / dt


def _pg_counters(db_url: str) -> tuple[int, int]:
    """(WAL position in bytes, checkpoints so far) of a PostgreSQL server."""
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as pg:
        row = pg.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
        wal = int(row[0]) if row else 0
        if pg.execute("SELECT to_regclass('pg_catalog.pg_stat_checkpointer')").fetchone() != (None,):
            row = pg.execute("SELECT num_timed + num_requested FROM pg_stat_checkpointer").fetchone()
        else:
            row = pg.execute("SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter").fetchone()
        return wal, int(row[0]) if row else 0


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
            broker, mqtt_url = _start_mosquitto(tmp)
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
            port = _free_port()
            ports.append(port)
            cmd = [sys.executable, "-m", "ingest.cli", "run", "--client-id", f"{run_id}-{i}",
                   "--metrics-port", str(port), "--no-migrate"]
            if args.workers > 1:
                cmd += ["--share-group", "bench"]
            log = (tmp / f"worker-{i}.log").open("wb")
            procs.append(subprocess.Popen(cmd, env=env, stderr=log, cwd=_REPO))
        deadline = time.monotonic() + 30
        for port in ports:
            while not _ready(port):
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
        pub: _Publisher
        if args.publisher == "mosquitto_pub":
            pub = _CliPublisher(broker_url.host, broker_url.port, run_id, {t for t, *_ in ready_batches})
        else:
            pub = _PahoPublisher(broker_url.host, broker_url.port, run_id)
        cpu0 = {p.pid: _cpu_seconds(p.pid) for p in procs}
        broker_cpu0 = _cpu_seconds(broker.pid) if broker else float("nan")
        pg_cpu0 = _postgres_cpu(pg_pid)
        is_pg = not db_url.startswith("sqlite")
        wal0, ckpt0 = _pg_counters(db_url) if is_pg else (0, 0)
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
        cpu = {p.pid: _cpu_seconds(p.pid) - cpu0[p.pid] for p in procs}
        broker_cpu = _cpu_seconds(broker.pid) - broker_cpu0 if broker else float("nan")
        self_cpu = time.process_time() + pub.cpu_seconds() - self_cpu0
        pg_cpu = _postgres_cpu(pg_pid) - pg_cpu0
        wal1, ckpt1 = _pg_counters(db_url) if is_pg else (0, 0)
        pub.close()
        acks.disconnect()
        acks.loop_stop()
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(60)

        total_batches = sum(published.values())
        total_readings = total_batches * args.batch
        stored_batches, readings, dup, dead = _count(db_url, published)
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
        p50, p99 = _percentile(lat, 50) * 1000, _percentile(lat, 99) * 1000
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
        copy = _copy_rate(db_url, rows, pg_pid)
        kind = "executemany (SQLite)" if db_url.startswith("sqlite") else "COPY BINARY"
        how = f" ({_COPY_ROWS} per transaction, a table like readings)" if is_pg else ""
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


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
