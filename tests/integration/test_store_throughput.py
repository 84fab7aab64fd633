"""Write throughput of ``PostgresStore.write`` against a raw binary COPY of the same rows into
a table with the same key: what the store's rules (claims, conflict checks, the batch id
that rollups and the mirror follow) cost over the cheapest way in.

As a test it asserts a floor on the ratio (the machine is shared, so only the ratio is
stable). As a script it prints the numbers, wall time and CPU seconds of both sides:

    python -m tests.integration.test_store_throughput postgresql://postgres@127.0.0.1:5432/postgres \\
        [--batches 3000] [--per-call 20 50 100] [--repeat 2]

(the URL names a server where the script may create and drop databases ``swbench_*``).
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta

import psycopg
import pytest
from psycopg import sql

from contract.codec import encode
from contract.models import Reading, TelemetryBatch
from ingest.ports import ValidBatch
from ingest.stores.postgres import PostgresStore
from tests.unit.test_store_contract import T0

METRICS = ("pm25", "pm10", "no2", "co", "o3")
_TICKS = os.sysconf("SC_CLK_TCK")


def telemetry(n_batches: int, *, gateways: int = 30) -> list[ValidBatch]:
    """``n_batches`` batches of 100 readings, round-robin over ``gateways`` gateways; a batch
    is 10 sensors x 5 metrics at 2 timestamps 10 s apart, as an air-quality gateway sends."""
    out = []
    seqs = [0] * gateways
    for i in range(n_batches):
        g = i % gateways
        seqs[g] += 1
        gw = f"gw-{g:02d}"
        t = T0 + timedelta(seconds=20 * (seqs[g] - 1))
        readings = [Reading(sensor=f"{gw}-s{s}", metric=m, ts=t + timedelta(seconds=10 * k),
                            value=float((i * 7 + s) % 100) + 0.5)
                    for k in range(2) for s in range(10) for m in METRICS]
        b = TelemetryBatch(v=1, gateway=gw, seq=seqs[g], sent_at=T0, readings=readings)
        out.append(ValidBatch(site="thong-nhat", topic=f"smartward/v1/thong-nhat/{gw}/telemetry",
                              received_at=T0, batch=b, raw=encode(b)))
    return out


@dataclass
class Run:
    label: str
    rows: int
    wall_s: float
    client_cpu_s: float
    server_cpu_s: float

    @property
    def rate(self) -> float:
        return self.rows / self.wall_s

    @property
    def cpu_rate(self) -> float:
        """Rows per CPU second, client and server together: what a 2-core box can sustain."""
        return self.rows / (self.client_cpu_s + self.server_cpu_s)

    def __str__(self) -> str:
        return (f"{self.label:<28} {self.rows:>8} rows  {self.rate:>10,.0f} rows/s wall  "
                f"{self.cpu_rate:>10,.0f} rows/CPU-s  (client {self.client_cpu_s:.2f} s, "
                f"server {self.server_cpu_s:.2f} s)")


def _backend_cpu_s(url: str, application_name: str) -> float:
    """CPU seconds used so far by the server processes of one application (same host)."""
    with psycopg.connect(url) as conn:
        pids = [r[0] for r in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (application_name,))]
    total = 0
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICKS


def measure_store(url: str, batches: Sequence[ValidBatch], per_call: int) -> Run:
    name = f"bench-store-{uuid.uuid4().hex[:6]}"
    with PostgresStore(url, min_size=1, max_size=1, name=name) as store:
        store.migrate()
        store.ping()
        server0, client0, wall0 = _backend_cpu_s(url, name), time.process_time(), time.perf_counter()
        rows = 0
        for i in range(0, len(batches), per_call):
            rows += store.write(batches[i:i + per_call], []).stored_readings
        wall, client = time.perf_counter() - wall0, time.process_time() - client0
        server = _backend_cpu_s(url, name) - server0
    return Run(f"store.write {per_call}/call", rows, wall, client, server)


def measure_raw_copy(url: str, batches: Sequence[ValidBatch], per_call: int) -> Run:
    """The same rows, one binary COPY and one commit per call, into readings' shape and key (a
    hypertable, like the store's, when the server has TimescaleDB)."""
    name = f"bench-raw-{uuid.uuid4().hex[:6]}"
    with psycopg.connect(url, application_name=name) as conn:
        conn.execute("""
            CREATE TABLE raw_readings (
                time timestamptz NOT NULL, site text COLLATE "C" NOT NULL, gateway text COLLATE "C" NOT NULL,
                sensor text COLLATE "C" NOT NULL, metric text COLLATE "C" NOT NULL,
                value double precision NOT NULL, quality text COLLATE "C" NOT NULL,
                UNIQUE (sensor, metric, time))""")
        if conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone():
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            conn.execute("SELECT create_hypertable('raw_readings', 'time', create_default_indexes => false, "
                         "chunk_time_interval => INTERVAL '1 day')")
        conn.commit()
        server0, client0, wall0 = _backend_cpu_s(url, name), time.process_time(), time.perf_counter()
        rows = 0
        with conn.cursor() as cur:
            for i in range(0, len(batches), per_call):
                with cur.copy("COPY raw_readings (time, site, gateway, sensor, metric, value, quality) "
                              "FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types(["timestamptz", "text", "text", "text", "text", "float8", "text"])
                    for vb in batches[i:i + per_call]:
                        site, gw = vb.site, vb.batch.gateway
                        for r in vb.batch.readings:
                            copy.write_row((r.ts, site, gw, r.sensor, r.metric, r.value, r.quality))
                rows += cur.rowcount
                conn.commit()
        wall, client = time.perf_counter() - wall0, time.process_time() - client0
        server = _backend_cpu_s(url, name) - server0
    return Run(f"raw COPY {per_call}/call", rows, wall, client, server)


def _fresh_db(server_url: str) -> Iterator[str]:
    name = f"swbench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield server_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def compare(server_url: str, n_batches: int, per_call: int) -> tuple[Run, Run]:
    batches = telemetry(n_batches)
    raw_db = _fresh_db(server_url)
    raw = measure_raw_copy(next(raw_db), batches, per_call)
    raw_db.close()
    store_db = _fresh_db(server_url)
    store = measure_store(next(store_db), batches, per_call)
    store_db.close()
    return raw, store


@pytest.mark.integration
@pytest.mark.parametrize("server", ["postgres", "timescale"])
def test_store_write_keeps_most_of_raw_copy_throughput(server: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(server).url
    raw, store = compare(url, 600, 50)
    print(f"\n{server}:\n  {raw}\n  {store}")
    assert store.rows == raw.rows == 60_000
    # CPU per row rather than wall time: other processes share this machine's two cores.
    assert store.cpu_rate >= 0.5 * raw.cpu_rate, (raw, store)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", help="server URL (a database the script may create others from)")
    parser.add_argument("--batches", type=int, default=3000)
    parser.add_argument("--per-call", type=int, nargs="+", default=[20, 50, 100])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    for per_call in args.per_call:
        for _ in range(args.repeat):
            raw, store = compare(args.url, args.batches, per_call)
            print(raw)
            print(store)
            print(f"{'':<28} store/raw: wall {store.rate / raw.rate:.2f}, "
                  f"CPU {store.cpu_rate / raw.cpu_rate:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
