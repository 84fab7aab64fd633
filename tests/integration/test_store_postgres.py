"""PostgresStore against real servers: what the schema is under each flavor, the COPY and the
checked write paths, rollups against ``time_bucket``, ``drop_chunks`` retention, and the pool
through a database crash and a locked table."""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import msgspec
import psycopg
import pytest

from contract.codec import encode
from contract.registry import load_registry, parse_registry
from ingest.errors import StoreError, StoreUnavailable
from ingest.ports import ValidBatch
from ingest.retention import RetentionPolicy, apply_retention
from ingest.stores import open_store
from ingest.stores.postgres import PostgresStore
from tests.support.waiting import wait_until
from tests.unit.test_store_contract import GW, ONE_SENSOR_REGISTRY, SITE, T0, batch, refresh

pytestmark = pytest.mark.integration


def scalar(url: str, query: str, params: tuple[Any, ...] = ()) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def rows(url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


def unique_key_columns(url: str, table: str) -> list[list[str]]:
    return [list(r[0]) for r in rows(url, """
        SELECT array_agg(a.attname ORDER BY k.n)
        FROM pg_index i
        JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) ON true
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
        WHERE i.indrelid = %s::regclass AND i.indisunique
        GROUP BY i.indexrelid""", (table,))]


@pytest.fixture
def pg_store(postgres_db: str) -> Iterator[PostgresStore]:
    s = PostgresStore(postgres_db)
    s.migrate()
    yield s
    s.close()


@pytest.fixture
def ts_store(timescale_db: str) -> Iterator[PostgresStore]:
    s = PostgresStore(timescale_db)
    s.migrate()
    yield s
    s.close()


def resequenced(vb: ValidBatch, seq: int) -> ValidBatch:
    """The same readings under another seq (an edge that re-batched its outbox)."""
    b = msgspec.structs.replace(vb.batch, seq=seq)
    return ValidBatch(vb.site, vb.topic, vb.received_at, b, encode(b))


def many_batches(n: int, *, first_seq: int = 1, start: datetime = T0, sensors: int = 10) -> list[ValidBatch]:
    """``n`` batches of 100 readings: ``sensors`` sensors x 5 metrics x 2 timestamps each."""
    rng = random.Random(first_seq)
    metrics = ("pm25", "pm10", "no2", "co", "o3")
    out = []
    for i in range(n):
        base = (start - T0).total_seconds() + 20 * i
        readings = [(f"tn-aq-{s:02d}", m, base + 10 * k, round(rng.uniform(0, 200), 2),
                     rng.choice(("good", "good", "good", "suspect", "bad")))
                    for k in range(2) for s in range(sensors) for m in metrics][:100]
        out.append(batch(first_seq + i, *readings))
    return out


# --- schema ------------------------------------------------------------------------------


def test_auto_detection_makes_readings_a_hypertable_on_timescaledb(timescale_db: str) -> None:
    with PostgresStore(timescale_db) as s:  # timescaledb=None: use it when the server has it
        s.migrate()
        assert s.flavor() == "timescaledb"
    assert scalar(timescale_db, "SELECT current_setting('timescaledb.license')") == "apache"
    assert rows(timescale_db, "SELECT column_name FROM timescaledb_information.dimensions "
                              "WHERE hypertable_name = 'readings'") == [("time",)]
    assert unique_key_columns(timescale_db, "readings") == [["sensor", "metric", "time"]]


def test_plain_postgresql_gets_plain_tables_with_the_contract_key(postgres_db: str) -> None:
    with PostgresStore(postgres_db) as s:
        s.migrate()
        assert s.flavor() == "postgresql"
    assert scalar(postgres_db, "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'") == 0
    assert unique_key_columns(postgres_db, "readings") == [["sensor", "metric", "time"]]
    assert sorted(unique_key_columns(postgres_db, "ingest_batches")) == [["gateway", "seq"], ["id"]]


def test_timescaledb_can_be_refused(timescale_db: str) -> None:
    with PostgresStore(timescale_db, timescaledb=False) as s:
        s.migrate()
        assert s.flavor() == "postgresql"
    assert scalar(timescale_db, "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'") == 0


def test_timescaledb_required_but_missing_is_an_error(postgres_db: str) -> None:
    with PostgresStore(postgres_db, timescaledb=True) as s, pytest.raises(StoreError, match="TimescaleDB"):
        s.migrate()


@pytest.mark.parametrize("server", ["postgres_db", "timescale_db"])
def test_contract_tables_have_the_contract_columns(server: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(server)
    with PostgresStore(url) as s:
        s.migrate()
    expected = {
        "readings": {"time", "site", "gateway", "sensor", "metric", "value", "quality"},
        "readings_1m": {"bucket", "site", "sensor", "metric", "avg", "min", "max", "count"},
        "readings_1h": {"bucket", "site", "sensor", "metric", "avg", "min", "max", "count"},
        "ingest_batches": {"gateway", "seq", "received_at", "readings", "outcome"},
        "dead_letters": {"id", "received_at", "topic", "gateway", "reason", "detail", "payload"},
        "sites": {"id", "name_vi", "name_en", "lat", "lon", "parent", "kind"},
        "gateways": {"id", "site", "name_vi", "name_en", "lat", "lon"},
        "sensors": {"id", "gateway", "site", "name_vi", "name_en", "lat", "lon", "kind", "metrics", "attrs",
                    "interval_s"},
        "seq_gaps": {"gateway", "first_seq", "last_seq", "missing", "lost"},
        "gateway_completeness": {"gateway", "site", "expected", "stored", "lost", "completeness_pct"},
    }
    for table, columns in expected.items():
        found = {r[0] for r in rows(
            url, "SELECT column_name FROM information_schema.columns WHERE table_name = %s", (table,))}
        assert columns <= found, (table, columns - found)
    time_type = rows(url, "SELECT data_type FROM information_schema.columns "
                          "WHERE table_name = 'readings' AND column_name = 'time'")
    assert time_type == [("timestamp with time zone",)]


def test_migrations_are_numbered_recorded_and_run_once(postgres_db: str) -> None:
    with PostgresStore(postgres_db) as s:
        s.migrate()
        s.migrate()
    assert rows(postgres_db, "SELECT version, source FROM schema_migrations ORDER BY version") == [
        (1, "0001_registry.postgresql.sql"), (2, "0002_readings.postgresql.sql"),
        (3, "0003_ingest.postgresql.sql"), (4, "0004_rollups.postgresql.sql"),
        (5, "0005_dead_letter_once.postgresql.sql"), (6, "0006_unsequenced_stream.postgresql.sql")]


def test_workers_starting_together_migrate_once(timescale_db: str) -> None:
    errors: list[BaseException] = []

    def migrate() -> None:
        try:
            with PostgresStore(timescale_db) as s:
                s.migrate()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert scalar(timescale_db, "SELECT count(*) FROM schema_migrations") == 6


def test_unmigrated_database_is_a_clear_error(postgres_db: str) -> None:
    with PostgresStore(postgres_db) as s, pytest.raises(StoreError, match="db migrate"):
        s.write([batch(1, ("tn-aq-01", "pm25", 0, 1.0))], [])


def test_open_store_chooses_by_scheme(postgres_db: str) -> None:
    s = open_store(postgres_db)
    try:
        assert isinstance(s, PostgresStore)
        assert s.ping()
    finally:
        s.close()
    with pytest.raises(ValueError, match="unsupported"):
        open_store("mysql://x")


# --- write paths ---------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["pg_store", "ts_store"])
def test_copy_path_and_checked_path_store_every_reading_once(fixture: str,
                                                             request: pytest.FixtureRequest) -> None:
    s: PostgresStore = request.getfixturevalue(fixture)
    first = many_batches(50)
    r = s.write(first, [])
    assert (r.stored_batches, r.stored_readings) == (50, 5000)
    # The same readings again under new seqs, plus new ones: the checked path, no conflict.
    resent = [resequenced(b, 1000 + i) for i, b in enumerate(first[:10])]
    r = s.write([*resent, *many_batches(5, first_seq=2000, start=T0 + timedelta(hours=5))], [])
    assert (r.stored_batches, r.stored_readings, r.dead_letters) == (15, 500, [])
    assert scalar(s.url, "SELECT count(*) FROM readings") == 5500


def test_concurrent_writers_with_the_same_readings_store_them_once(pg_store: PostgresStore) -> None:
    """Two workers on a shared subscription can hold batches with the same readings (an edge
    that re-batched its outbox): each key is stored once, no conflict is invented."""
    url = pg_store.url
    template = many_batches(20)
    errors: list[BaseException] = []

    def worker(offset: int) -> None:
        with PostgresStore(url) as s:
            todo = [resequenced(b, offset + i) for i, b in enumerate(template)]
            for chunk in (todo[i:i + 5] for i in range(0, len(todo), 5)):
                deadline = time.monotonic() + 30
                while True:
                    try:
                        r = s.write(chunk, [])
                        assert r.dead_letters == []
                        break
                    except StoreUnavailable as exc:  # a deadlock or a race: retried, as the worker does
                        if time.monotonic() > deadline:
                            errors.append(exc)
                            return
                    except BaseException as exc:
                        errors.append(exc)
                        return

    threads = [threading.Thread(target=worker, args=(off,)) for off in (1, 10_001)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert scalar(url, "SELECT count(*) FROM readings") == 2000
    assert scalar(url, "SELECT count(*) FROM ingest_batches WHERE outcome = 'stored'") == 40


def test_mirror_waits_for_a_writer_that_claimed_before_a_committed_one(pg_store: PostgresStore) -> None:
    """Identity ids of concurrent writers become visible out of order: the mirror must not
    pass a batch whose transaction is still running (it would never see it)."""
    slow = psycopg.connect(pg_store.url)
    try:
        with PostgresStore(pg_store.url) as other:
            other.write([batch(1, ("tn-aq-01", "pm25", 0, 1.0))], [])
            # A worker in the middle of its transaction (claimed, not committed)...
            slow.execute("INSERT INTO ingest_batches (gateway, seq, site, received_at, readings, outcome, "
                         "digest) VALUES ('tn-gw-02', 1, %s, now(), 1, 'stored', '\\x00')", (SITE,))
            # ...while another commits after it.
            other.write([batch(2, ("tn-aq-01", "pm25", 60, 2.0))], [])
        page = pg_store.read_since(0, 100)
        assert [r.value for r in page.rows] == [1.0]
        assert pg_store.read_since(page.checkpoint, 100).rows == []
        slow.commit()
        after = pg_store.read_since(page.checkpoint, 100)
        assert [r.value for r in after.rows] == [2.0]
    finally:
        slow.close()


# --- rollups and retention ---------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["pg_store", "ts_store"])
def test_rollups_equal_a_direct_aggregate_of_readings(fixture: str, request: pytest.FixtureRequest) -> None:
    s: PostgresStore = request.getfixturevalue(fixture)
    # Three hours of data, written out of order, with late batches after a first refresh.
    batches = many_batches(540, start=T0)
    random.Random(7).shuffle(batches)
    for i in range(0, 400, 40):
        s.write(batches[i:i + 40], [])
    refresh(s)
    for i in range(400, 540, 35):
        s.write(batches[i:i + 35], [])
    refresh(s)
    bucket = ("time_bucket('{}', time)" if s.flavor().startswith("timescaledb")
              else "date_trunc('{}', time)")
    for table, unit in (("readings_1m", "minute"), ("readings_1h", "hour")):
        expr = bucket.format(f"1 {unit}" if "time_bucket" in bucket else unit)
        direct = rows(s.url, f"""
            SELECT {expr} AS b, site, sensor, metric, avg(value), min(value), max(value), count(*)
            FROM readings WHERE quality IN ('good', 'suspect')
            GROUP BY b, site, sensor, metric ORDER BY sensor, metric, b""")
        kept = rows(s.url, f"SELECT bucket, site, sensor, metric, avg, min, max, count FROM {table} "
                           "ORDER BY sensor, metric, bucket")
        assert len(kept) == len(direct) > 0
        for a, b in zip(kept, direct, strict=True):
            assert a[:4] == b[:4]
            assert a[4] == pytest.approx(b[4])
            assert a[5:] == b[5:]
    assert s.refresh_rollups() == 0  # caught up


def test_retention_drops_whole_chunks_on_timescaledb(ts_store: PostgresStore) -> None:
    for day in range(6):
        ts_store.write(many_batches(2, first_seq=1 + 10 * day, start=T0 - timedelta(days=day)), [])
    chunks = scalar(ts_store.url, "SELECT count(*) FROM show_chunks('readings')")
    assert chunks >= 6
    # Readings at 05:00 on each of six days, 1-day chunks from midnight UTC. Cutoff: three
    # days back, 05:00: the two chunks that end before it go, the one it falls in stays.
    result = apply_retention(ts_store, RetentionPolicy(readings_days=3), T0)
    assert result.readings_chunks == 2
    left = scalar(ts_store.url, "SELECT count(*) FROM show_chunks('readings')")
    assert left == chunks - result.readings_chunks
    assert scalar(ts_store.url, "SELECT min(time) FROM readings") >= T0 - timedelta(days=4)
    assert scalar(ts_store.url, "SELECT max(time) FROM readings") >= T0


def test_retention_deletes_rows_on_plain_postgresql(pg_store: PostgresStore) -> None:
    pg_store.write(many_batches(2, start=T0 - timedelta(days=10)) + many_batches(2, first_seq=50), [])
    refresh(pg_store)
    result = apply_retention(pg_store, RetentionPolicy(readings_days=5, rollup_1m_days=5), T0)
    assert (result.readings_rows, result.readings_chunks) == (200, 0)
    assert result.rollup_1m_rows > 0
    assert scalar(pg_store.url, "SELECT count(*) FROM readings") == 200
    assert scalar(pg_store.url, "SELECT count(*) FROM readings_1h WHERE bucket < %s", (T0,)) > 0


# --- registry ------------------------------------------------------------------------------


def test_sync_registry_upserts_and_retires(pg_store: PostgresStore) -> None:
    registry = load_registry()
    pg_store.sync_registry(registry)
    pg_store.sync_registry(registry)
    url = pg_store.url
    assert scalar(url, "SELECT count(*) FROM sites WHERE active") == len(registry.sites)
    assert scalar(url, "SELECT count(*) FROM sensors WHERE active") == len(registry.sensors)
    assert scalar(url, "SELECT count(*) FROM metrics") > 30
    sensor = registry.sensors["tn-aq-01"]
    got = rows(url, "SELECT gateway, site, kind, metrics, interval_s, attrs FROM sensors WHERE id = %s",
               ("tn-aq-01",))
    assert got == [
        (sensor.gateway, sensor.site, "air_quality", list(sensor.spec.metrics), sensor.spec.interval_s,
         dict(sensor.spec.attrs))]
    pg_store.sync_registry(parse_registry(ONE_SENSOR_REGISTRY))
    assert rows(url, "SELECT id FROM sensors WHERE active") == [("tn-aq-01",)]
    assert scalar(url, "SELECT count(*) FROM sensors") == len(registry.sensors)
    assert scalar(url, "SELECT parent FROM sites WHERE id = 'thong-nhat'") is None
    assert pg_store.completeness() == []  # no batches yet
    pg_store.write([batch(1, ("tn-aq-01", "pm25", 0, 1.0))], [])
    assert [(c.gateway, c.site) for c in pg_store.completeness()] == [(GW, SITE)]


# --- failures --------------------------------------------------------------------------------


def _write_once_the_database_is_back(store: PostgresStore, make: Callable[[int], Any],
                                     timeout_s: float) -> Any:
    """Write a new batch (seq 101, 102, ...) until one commits; the deadline bounds the retries."""
    seqs = itertools.count(101)
    written: list[Any] = []

    def attempt() -> bool:
        try:
            written.append(store.write([make(next(seqs))], []))
        except StoreUnavailable:
            return False
        return True

    wait_until(attempt, timeout_s, "a write committed by the restarted database")
    return written[0]


@pytest.mark.parametrize("factory", ["make_postgres", "make_timescale"])
def test_store_is_unavailable_while_the_database_is_down_and_recovers(
        factory: str, request: pytest.FixtureRequest) -> None:
    server = request.getfixturevalue(factory)()
    url = server.fresh_db()
    with PostgresStore(url, min_size=2, max_size=2, acquire_timeout_s=1.0, connect_timeout_s=1.0,
                       reconnect_timeout_s=1.0) as s:
        s.migrate()
        assert s.write([batch(1, ("tn-aq-01", "pm25", 0, 1.0))], []).stored_batches == 1
        server.stop_immediate()
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            s.write([batch(2, ("tn-aq-01", "pm25", 60, 2.0))], [])
        with pytest.raises(StoreUnavailable):
            s.watermarks()
        assert s.ping(timeout_s=1.0) is False
        assert time.monotonic() - started < 15  # fails fast, never hangs
        # Down for longer than the pool's reconnect timeout: it gives up its attempts, and
        # must still connect again when asked.
        while time.monotonic() - started < 4:
            with pytest.raises(StoreUnavailable):
                s.write([batch(2, ("tn-aq-01", "pm25", 60, 2.0))], [])
        server.start()
        r = _write_once_the_database_is_back(s, lambda seq: batch(seq, ("tn-aq-01", "pm25", seq, 2.0)),
                                             timeout_s=30)
        assert r.stored_batches == 1
        assert s.ping()
        # Every pooled connection was replaced: several calls in a row all work.
        for seq in range(500, 505):
            assert s.write([batch(seq, ("tn-aq-01", "pm25", seq, 3.0))], []).stored_batches == 1
        assert s.handled_seqs(GW, 0, 10)[0] == 1


def test_a_locked_table_times_out_as_unavailable(pg_store: PostgresStore, postgres_db: str) -> None:
    with PostgresStore(postgres_db, statement_timeout_ms=300) as s:
        with psycopg.connect(postgres_db) as locker:
            locker.execute("LOCK TABLE readings IN ACCESS EXCLUSIVE MODE")
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                s.write([batch(1, ("tn-aq-01", "pm25", 0, 1.0))], [])
            assert time.monotonic() - started < 5
            locker.rollback()
        assert s.write([batch(1, ("tn-aq-01", "pm25", 0, 1.0))], []).stored_batches == 1


def test_times_are_stored_in_utc_whatever_the_sender_offset(pg_store: PostgresStore) -> None:
    b = batch(1, ("tn-aq-01", "pm25", 0, 1.0))
    ict = timezone(timedelta(hours=7))  # Asia/Ho_Chi_Minh
    shifted = msgspec.structs.replace(b.batch, readings=[
        msgspec.structs.replace(r, ts=r.ts.astimezone(ict)) for r in b.batch.readings])
    assert shifted.readings[0].ts.utcoffset() == timedelta(hours=7)
    pg_store.write([ValidBatch(b.site, b.topic, b.received_at, shifted, encode(shifted))], [])
    assert scalar(pg_store.url, "SELECT time FROM readings") == T0
    assert scalar(pg_store.url, "SELECT time::text FROM readings") == "2026-11-28 05:00:00+00"


def test_a_connection_killed_right_after_use_costs_one_retry_at_most(pg_store: PostgresStore,
                                                                      postgres_db: str) -> None:
    # The pool skips its check round trip for a connection used in the last second; a backend
    # that died meanwhile must surface as StoreUnavailable (retried), never as a lost write.
    assert pg_store.write([batch(1, ("tn-aq-01", "pm25", 0, 1.0))], []).stored_batches == 1
    with psycopg.connect(postgres_db, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    try:
        r = pg_store.write([batch(2, ("tn-aq-01", "pm25", 60, 2.0))], [])
    except StoreUnavailable:
        r = pg_store.write([batch(2, ("tn-aq-01", "pm25", 60, 2.0))], [])
    assert r.stored_batches == 1
    assert scalar(postgres_db, "SELECT count(*) FROM readings") == 2


def test_a_reading_conflict_found_by_copy_redoes_the_whole_transaction_carefully(
        ts_store: PostgresStore, timescale_db: str) -> None:
    # No savepoint around the COPY: the UniqueViolation rolls back the claims too, and the
    # careful path claims again, so the new batch is stored and the clash is a dead letter.
    assert ts_store.write([batch(1, ("tn-aq-01", "pm25", 0, 1.0))], []).stored_batches == 1
    r = ts_store.write([batch(2, ("tn-aq-01", "pm25", 0, 9.0)), batch(3, ("tn-aq-01", "pm25", 60, 3.0))], [],
                       watermarks={GW: 1})
    assert (r.stored_batches, r.stored_readings) == (1, 1)
    assert [d.reason for d in r.dead_letters] == ["conflict"]
    assert sorted(r.handled) == [(GW, 2), (GW, 3)]
    assert rows(timescale_db, "SELECT seq, outcome FROM ingest_batches ORDER BY seq") == [
        (1, "stored"), (2, "dead_letter"), (3, "stored")]
    assert ts_store.watermarks() == {GW: 1}
