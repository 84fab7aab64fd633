"""The server fixtures start real servers that behave as the platform needs them to."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS

from tests.servers._proc import missing_server
from tests.servers.postgres import PostgresServer
from tests.servers.timescale import TimescaleServer
from tests.servers.victoria import VictoriaServer

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 28, 0, 0, tzinfo=UTC)


def _count(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


def _survives_immediate_stop(server: PostgresServer) -> None:
    url = server.fresh_db()
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
        conn.execute("INSERT INTO t SELECT generate_series(1, 1000)")
    server.stop_immediate()
    assert not server.is_running()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)
    server.start()
    assert _count(url, "t") == 1000  # committed rows survive the crash (WAL replay)


# --- PostgreSQL --------------------------------------------------------------------------


def test_postgres_gives_each_test_a_fresh_database(postgres: PostgresServer, postgres_db: str) -> None:
    with psycopg.connect(postgres_db) as conn:
        row = conn.execute("SELECT current_setting('server_version_num')::int, current_database()").fetchone()
    assert row is not None
    version_num, dbname = row
    assert version_num >= 150000
    assert postgres_db.endswith(f"/{dbname}")
    assert postgres.fresh_db() != postgres_db
    assert postgres.url.startswith(f"postgresql://postgres@127.0.0.1:{postgres.port}/")


def test_postgres_keeps_committed_rows_through_immediate_stop(
    make_postgres: Callable[[], PostgresServer],
) -> None:
    _survives_immediate_stop(make_postgres())


def test_postgres_restart_keeps_its_url(postgres: PostgresServer) -> None:
    postgres.restart()
    with psycopg.connect(postgres.url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


# --- TimescaleDB -------------------------------------------------------------------------


def test_timescale_is_the_apache_edition_of_postgresql_17(timescale: TimescaleServer) -> None:
    assert timescale.license == "apache"
    assert timescale.timescaledb_version
    assert timescale.server_version().startswith("17")


def test_timescale_hypertable_time_bucket_and_drop_chunks(timescale: TimescaleServer) -> None:
    url = timescale.fresh_db(extensions=["timescaledb"])
    with psycopg.connect(url) as conn:
        conn.execute(
            """
            CREATE TABLE readings (
                time timestamptz NOT NULL, sensor text NOT NULL, metric text NOT NULL,
                value double precision NOT NULL, UNIQUE (sensor, metric, time))
            """
        )
        conn.execute("SELECT create_hypertable('readings', 'time', chunk_time_interval => interval '1 day')")
        # Three days, one reading a minute: three daily chunks.
        rows = [(T0 + timedelta(minutes=i), "tn-aq-01", "pm25", float(i % 60)) for i in range(3 * 24 * 60)]
        with conn.cursor() as cur, cur.copy("COPY readings (time, sensor, metric, value) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.commit()

        buckets = conn.execute(
            "SELECT time_bucket('1 hour', time) AS b, count(*), avg(value)"
            " FROM readings GROUP BY b ORDER BY b"
        ).fetchall()
        assert len(buckets) == 72
        assert all(count == 60 and avg == pytest.approx(29.5) for _, count, avg in buckets)
        assert buckets[0][0] == T0

        chunks = conn.execute("SELECT count(*) FROM show_chunks('readings')").fetchone()
        assert chunks == (3,)
        dropped = conn.execute(
            "SELECT drop_chunks('readings', older_than => %s::timestamptz)", (T0 + timedelta(days=2),)
        ).fetchall()
        conn.commit()
        assert len(dropped) == 2
    assert _count(url, "readings") == 24 * 60


def test_timescale_keeps_committed_rows_through_immediate_stop(
    make_timescale: Callable[[], TimescaleServer],
) -> None:
    _survives_immediate_stop(make_timescale())


# --- VictoriaMetrics (the InfluxDB mirror's test server) ---------------------------------


def test_victoria_stores_influxdb_client_writes(victoria: VictoriaServer) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    points = [
        Point("mirror_test")
        .tag("site", "thong-nhat")
        .tag("sensor", f"tn-aq-0{i}")
        .field("pm25", 40.0 + i)
        .time(now - timedelta(seconds=i), WritePrecision.S)
        for i in range(1, 4)
    ]
    # org, bucket and token are required by the client and ignored by the server.
    with InfluxDBClient(url=victoria.url, token="test-token", org="smartward") as client:
        client.write_api(write_options=SYNCHRONOUS).write(bucket="readings", record=points)

    series = victoria.wait_for_points('{__name__="mirror_test_pm25"}', count=3)
    by_sensor = {s.labels["sensor"]: s for s in series}
    assert set(by_sensor) == {"tn-aq-01", "tn-aq-02", "tn-aq-03"}
    assert by_sensor["tn-aq-02"].labels["site"] == "thong-nhat"
    assert by_sensor["tn-aq-02"].values == [42.0]
    assert by_sensor["tn-aq-02"].timestamps_ms == [int((now - timedelta(seconds=2)).timestamp() * 1000)]


def test_victoria_keeps_written_points_across_a_clean_restart(
    make_victoria: Callable[[], VictoriaServer],
) -> None:
    server = make_victoria()
    now = datetime.now(UTC).replace(microsecond=0)
    with InfluxDBClient(url=server.url, token="t", org="o") as client:
        client.write_api(write_options=SYNCHRONOUS).write(
            bucket="b", record=Point("restart_test").tag("sensor", "s1").field("value", 1.5).time(now)
        )
    server.wait_for_points('{__name__="restart_test_value"}', count=1)
    server.restart()
    assert [s.values for s in server.export('{__name__="restart_test_value"}')] == [[1.5]]


# --- a missing server --------------------------------------------------------------------


def test_missing_server_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="install-test-deps"):
        missing_server("Example", "not installed")


def test_missing_server_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="install-test-deps"):
        missing_server("Example", "not installed")
