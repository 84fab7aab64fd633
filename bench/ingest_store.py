"""The servers and the store side of ``smartward bench ingest``: a private Mosquitto, what the
store holds after the run (loss, duplicates), the raw COPY reference and PostgreSQL's counters."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.measure import free_port, postgres_cpu, wait_port

_REPO = Path(__file__).resolve().parents[1]
COPY_ROWS = 10_000  # rows per transaction of the raw COPY reference


def start_mosquitto(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
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
    wait_port(port, 10)
    return proc, f"mqtt://127.0.0.1:{port}"


def count_stored(db_url: str, published: dict[str, int]) -> tuple[int, int, int, int]:
    """(batches stored or dead-lettered among published, readings, duplicate batch rows, dead letters)."""
    if db_url.startswith("sqlite"):
        path = db_url.split("sqlite:///", 1)[1]
        con = sqlite3.connect(path)
        try:
            return count_sql(con.execute, published)
        finally:
            con.close()
    import psycopg

    with psycopg.connect(db_url) as pg:
        def execute(q: str, params: Sequence[Any] = ()) -> Any:
            return pg.execute(q.replace("?", "%s"), params)
        return count_sql(execute, published)


def count_sql(execute: Any, published: dict[str, int]) -> tuple[int, int, int, int]:
    stored = 0
    for gw, n in published.items():
        stored += execute("SELECT count(DISTINCT seq) FROM ingest_batches WHERE gateway = ? AND seq <= ?",
                          (gw, n)).fetchone()[0]
    readings = execute("SELECT count(*) FROM readings").fetchone()[0]
    dup = execute("SELECT count(*) - count(DISTINCT gateway || ':' || seq) FROM ingest_batches").fetchone()[0]
    dead = execute("SELECT count(*) FROM dead_letters").fetchone()[0]
    return int(stored), int(readings), int(dup), int(dead)


def copy_rate(db_url: str, rows: list[tuple[Any, ...]], pg_pid: int | None) -> float:
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
        cpu0 = postgres_cpu(pg_pid)
        t0 = time.perf_counter()
        for start in range(0, len(rows), COPY_ROWS):
            with pg.cursor() as cur, cur.copy(
                    "COPY bench_copy (time, site, gateway, sensor, metric, value, quality, batch_id) "
                    "FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["timestamptz", "text", "text", "text", "text", "float8", "text", "int8"])
                for i, r in enumerate(rows[start:start + COPY_ROWS], start):
                    copy.write_row((*r, i // 100))
            pg.commit()
        dt = time.perf_counter() - t0
        cpu = postgres_cpu(pg_pid) - cpu0
        pg.execute("DROP TABLE bench_copy")
        pg.commit()
        print(f"raw COPY       postgres {cpu / len(rows) * 1e6:.2f} us CPU per row")
        return len(rows) / dt


def pg_counters(db_url: str) -> tuple[int, int]:
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

