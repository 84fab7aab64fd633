"""SqliteStore specifics: a file that outlives the process, its time format, WAL, locking,
registry sync. The shared behaviour is in test_store_contract.py."""

from __future__ import annotations

import sqlite3
from datetime import timedelta, timezone
from pathlib import Path

import msgspec
import pytest

from contract.codec import encode
from contract.registry import load_registry, parse_registry
from ingest.errors import StoreUnavailable
from ingest.ports import ValidBatch
from ingest.rollup import RollupRunner
from ingest.stores import open_store
from ingest.stores.sqlite import SqliteStore, parse_sqlite_time, path_from_url, sqlite_time
from tests.unit.test_store_contract import GW, ONE_SENSOR_REGISTRY, T0, batch, senml


def test_a_reopened_file_keeps_batches_watermarks_and_rollups(tmp_path: Path) -> None:
    path = tmp_path / "smartward.db"
    s = SqliteStore(path)
    s.migrate()
    s.write([batch(1, ("tn-aq-01", "pm25", 0, 41.5))], [], watermarks={GW: 1})
    s.refresh_rollups()
    s.close()
    again = SqliteStore(path)
    again.migrate()
    assert again.watermarks() == {GW: 1}
    assert again.write([batch(1, ("tn-aq-01", "pm25", 0, 41.5))], []).duplicate_batches == 1
    minutes = again.query_rollup("1m", "tn-aq-01", "pm25", T0, T0 + timedelta(hours=1))
    assert [r.avg for r in minutes] == [41.5]
    again.close()


def test_times_are_fixed_width_rfc3339_utc_text(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "s.db")
    s.migrate()
    b = batch(1, ("tn-aq-01", "pm25", 0.25, 1.0))
    ict = timezone(timedelta(hours=7))
    shifted = msgspec.structs.replace(b.batch, readings=[
        msgspec.structs.replace(r, ts=r.ts.astimezone(ict)) for r in b.batch.readings])
    s.write([ValidBatch(b.site, b.topic, b.received_at, shifted, encode(shifted))], [])
    s.refresh_rollups()
    s.close()
    with sqlite3.connect(tmp_path / "s.db") as conn:
        assert conn.execute("SELECT time FROM readings").fetchall() == [("2026-11-28T05:00:00.250000Z",)]
        assert conn.execute("SELECT bucket FROM readings_1m").fetchall() == [("2026-11-28T05:00:00.000000Z",)]
        assert conn.execute("SELECT bucket FROM readings_1h").fetchall() == [("2026-11-28T05:00:00.000000Z",)]
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_time_text_round_trips_and_sorts_as_time() -> None:
    times = [T0 - timedelta(days=400), T0, T0 + timedelta(microseconds=1), T0 + timedelta(hours=30)]
    texts = [sqlite_time(t) for t in times]
    assert sorted(texts) == texts
    assert {len(t) for t in texts} == {27}
    assert [parse_sqlite_time(t) for t in texts] == times
    with pytest.raises(ValueError, match="naive"):
        sqlite_time(T0.replace(tzinfo=None))


def test_urls_name_the_file() -> None:
    assert path_from_url("sqlite:///./smartward.db") == "./smartward.db"
    assert path_from_url("sqlite:////var/lib/smartward/x.db") == "/var/lib/smartward/x.db"
    with pytest.raises(ValueError):
        path_from_url("sqlite://")


def test_open_store_opens_sqlite_urls(tmp_path: Path) -> None:
    s = open_store(f"sqlite:///{tmp_path}/via-url.db")
    assert isinstance(s, SqliteStore)
    s.migrate()
    assert (tmp_path / "via-url.db").exists()
    s.close()


def test_a_database_locked_by_another_writer_is_unavailable_not_an_error(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "s.db", busy_timeout_ms=50)
    s.migrate()
    other = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(StoreUnavailable, match="locked"):
        s.write([batch(1, ("tn-aq-01", "pm25", 0, 1.0))], [])
    other.execute("ROLLBACK")
    other.close()
    assert s.write([batch(1, ("tn-aq-01", "pm25", 0, 1.0))], []).stored_batches == 1
    s.close()


def test_migrations_are_recorded_once(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "s.db")
    s.migrate()
    s.migrate()
    s.close()
    with sqlite3.connect(tmp_path / "s.db") as conn:
        assert conn.execute("SELECT version, name FROM schema_migrations").fetchall() == [
            (1, "registry"), (2, "readings"), (3, "ingest"), (4, "rollups"), (5, "dead_letter_once"),
            (6, "unsequenced_stream")]


def test_sync_registry_upserts_and_retires(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "s.db")
    s.migrate()
    registry = load_registry()
    s.sync_registry(registry)
    s.sync_registry(registry)
    s.sync_registry(parse_registry(ONE_SENSOR_REGISTRY))
    s.close()
    with sqlite3.connect(tmp_path / "s.db") as conn:
        assert conn.execute("SELECT count(*) FROM sensors").fetchone() == (len(registry.sensors),)
        active = conn.execute("SELECT id, metrics, attrs, name_vi FROM sensors WHERE active = 1").fetchall()
        assert active == [
            ("tn-aq-01", '["pm25", "pm10", "no2", "co", "o3", "so2", "air_temp_c", "humidity_pct"]',
             '{"zone": "truong-hoc"}', "Trạm quan trắc không khí tn-aq-01")]
        assert conn.execute("SELECT id FROM sites WHERE active = 1").fetchall() == [("thong-nhat",)]


def test_the_rollup_runner_keeps_rollups_current(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "s.db")
    s.migrate()
    with RollupRunner(s, interval_s=60, min_interval_s=0) as runner:
        s.write([batch(1, ("tn-aq-01", "pm25", 0, 10.0), ("tn-aq-01", "pm25", 30, 20.0))], [])
        runner.notify()
        assert runner.caught_up.wait(10), "rollups not refreshed within 10 s"
    (m,) = s.query_rollup("1m", "tn-aq-01", "pm25", T0, T0 + timedelta(hours=1))
    assert (m.avg, m.count) == (15.0, 2)
    assert runner.refreshed == 2
    s.close()


def test_unsequenced_ids_share_one_counter_with_ingest_batches(tmp_path: Path) -> None:
    """SenML first on a fresh file (no AUTOINCREMENT row yet), then telemetry, then SenML again
    after a reopen: every stream id is new, in commit order, and each reading has its own."""
    path = tmp_path / "ids.db"
    s = SqliteStore(path)
    s.migrate()
    s.write([senml(("tn-aq-01", "pm25", 0, 1.0)), senml(("tn-aq-01", "pm25", 10, 2.0))], [])
    s.write([batch(1, ("tn-aq-01", "pm25", 20, 3.0))], [])
    s.close()
    s = SqliteStore(path)
    s.write([senml(("tn-aq-01", "pm25", 30, 4.0))], [])
    s.write([batch(2, ("tn-aq-01", "pm25", 40, 5.0))], [])
    s.close()
    with sqlite3.connect(path) as conn:
        stream = conn.execute("SELECT id, 'b' FROM ingest_batches UNION ALL "
                              "SELECT id, 'u' FROM ingest_unsequenced ORDER BY 1").fetchall()
        by_reading = conn.execute("SELECT value, batch_id FROM readings ORDER BY time").fetchall()
    assert stream == [(1, "u"), (2, "u"), (3, "b"), (4, "u"), (5, "b")]
    assert by_reading == [(1.0, 1), (2.0, 2), (3.0, 3), (4.0, 4), (5.0, 5)]
