"""R8: the InfluxDB mirror against a real VictoriaMetrics (InfluxDB v2 write API).

The system of record here is an in-memory MirrorSource; the mirror must never change it, must
catch up after the mirror was down or answered 5xx, and must skip (and record) points that the
mirror refuses with a 4xx. Faults come from stopping the server and from a tiny HTTP proxy.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from contract import topics
from contract.codec import encode
from contract.models import Reading, TelemetryBatch
from contract.registry import load_registry
from ingest.mirror import InfluxMirror, InfluxWriter, MirrorPage, MirrorRow, MirrorUnavailable
from ingest.pipeline import TimeWindow
from ingest.ports import ValidBatch
from ingest.senml import classify_senml
from ingest.stores.postgres import PostgresStore
from ingest.stores.sqlite import SqliteStore
from tests.servers.victoria import VictoriaServer

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 28, 4, 0, tzinfo=UTC)


class ListSource:
    """System of record stand-in: rows in commit order, checkpoint = index of the next row."""

    def __init__(self) -> None:
        self.rows: list[MirrorRow] = []
        self.checkpoints: dict[str, int] = {}
        self.lock = threading.Lock()

    def add(self, n: int, *, sensor: str = "tn-aq-01", metric: str = "pm25") -> None:
        with self.lock:
            start = len(self.rows)
            self.rows.extend(
                MirrorRow(
                    T0 + timedelta(seconds=start + i),
                    "thong-nhat",
                    "tn-gw-01",
                    sensor,
                    metric,
                    float(start + i),
                    "good",
                )
                for i in range(n)
            )

    def read_since(self, checkpoint: int, limit: int) -> MirrorPage:
        with self.lock:
            rows = self.rows[checkpoint : checkpoint + limit]
        return MirrorPage(rows, checkpoint + len(rows))

    def mirror_checkpoint(self, name: str) -> int:
        return self.checkpoints.get(name, 0)

    def save_mirror_checkpoint(self, name: str, checkpoint: int) -> None:
        self.checkpoints[name] = checkpoint


class FaultProxy:
    """HTTP proxy: ``mode`` is "pass", "500", or "reject:<text>" (400 when the body has <text>)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.mode = "pass"
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if proxy.mode == "500":
                    return self._answer(500, b'{"code":"internal error","message":"injected"}')
                if proxy.mode.startswith("reject:") and proxy.mode[7:].encode() in body:
                    return self._answer(400, b'{"code":"invalid","message":"injected point rejection"}')
                req = urllib.request.Request(
                    proxy.upstream + self.path,
                    data=body,
                    method="POST",
                    headers={
                        k: v for k, v in self.headers.items() if k.lower() not in {"host", "content-length"}
                    },
                )
                try:
                    with urllib.request.urlopen(req, timeout=10) as resp:
                        self._answer(resp.status, resp.read())
                except urllib.error.HTTPError as exc:
                    self._answer(exc.code, exc.read())
                except OSError:
                    self._answer(502, b'{"message":"upstream down"}')

            def _answer(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def vm(make_victoria: Callable[[], VictoriaServer]) -> VictoriaServer:
    return make_victoria()


@pytest.fixture
def proxy(vm: VictoriaServer) -> Iterator[FaultProxy]:
    p = FaultProxy(vm.url)
    yield p
    p.close()


def mirror_to(url: str, source: ListSource, **kw: float) -> InfluxMirror:
    writer = InfluxWriter(url, "token", "smartward", "smartward", timeout_ms=5000)
    return InfluxMirror(source, writer, batch_rows=500, retry_initial_s=0.05, retry_max_s=0.5, **kw)


def points(vm: VictoriaServer, count: int) -> int:
    found = vm.wait_for_points('{__name__="pm25_value"}', count=count, timeout_s=20)
    return sum(len(s.values) for s in found)


def test_mirror_writes_every_stored_reading_with_site_gateway_sensor_tags(vm: VictoriaServer) -> None:
    src = ListSource()
    src.add(1200)
    m = mirror_to(vm.url, src)
    assert m.catch_up(timeout_s=30)
    assert src.checkpoints["influx"] == 1200
    found = vm.wait_for_points('{__name__="pm25_value"}', count=1200, timeout_s=20)
    assert [s.labels for s in found] == [
        {
            "__name__": "pm25_value",
            "site": "thong-nhat",
            "gateway": "tn-gw-01",
            "sensor": "tn-aq-01",
            "quality": "good",
        }
    ]
    assert sorted(found[0].values) == [float(i) for i in range(1200)]
    assert found[0].timestamps_ms[0] == int(T0.timestamp() * 1000)


def test_mirror_down_leaves_the_record_alone_and_catches_up(vm: VictoriaServer) -> None:
    src = ListSource()
    src.add(300)
    m = mirror_to(vm.url, src)
    assert m.catch_up(timeout_s=30)
    vm.stop()
    src.add(700)  # the system of record keeps taking data
    with pytest.raises(MirrorUnavailable):
        m.sync_once()
    assert src.checkpoints["influx"] == 300 and len(src.rows) == 1000
    vm.start()
    assert m.catch_up(timeout_s=30)
    assert points(vm, 1000) == 1000


def test_mirror_answering_5xx_is_retried_in_the_background_until_it_heals(
    vm: VictoriaServer, proxy: FaultProxy
) -> None:
    src = ListSource()
    src.add(500)
    proxy.mode = "500"
    m = mirror_to(proxy.url, src, idle_s=0.05)
    with m.running():
        deadline = time.monotonic() + 10
        while m.metrics.mirror_errors._value.get() < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert m.metrics.mirror_errors._value.get() >= 3
        assert src.checkpoints.get("influx", 0) == 0
        proxy.mode = "pass"
        assert points(vm, 500) == 500
    assert src.checkpoints["influx"] == 500 and m.rejected_total == 0


def test_points_refused_with_4xx_are_recorded_and_skipped(vm: VictoriaServer, proxy: FaultProxy) -> None:
    src = ListSource()
    src.add(200)
    src.add(3, sensor="poison-01")
    src.add(200)
    proxy.mode = "reject:sensor=poison-01"
    m = mirror_to(proxy.url, src)
    assert m.catch_up(timeout_s=30)
    assert m.rejected_total == 3 and all("poison-01" in line for line, _ in m.rejected)
    assert src.checkpoints["influx"] == 403
    assert points(vm, 400) == 400


@pytest.mark.parametrize("kind", ["sqlite", "timescaledb"])
def test_senml_readings_are_mirrored_from_a_real_store_like_telemetry(
    vm: VictoriaServer, kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """SenML messages have no seq, yet their readings are in the stored stream that the mirror
    follows (ingest migration 0006): mirrored once each, with the same tags as telemetry."""
    store: SqliteStore | PostgresStore = (
        SqliteStore(tmp_path / "m.db") if kind == "sqlite"
        else PostgresStore(request.getfixturevalue("timescale_db"), timescaledb=True))
    with store:
        store.migrate()
        now = datetime.now(UTC).replace(microsecond=0)
        reading = Reading(sensor="tn-aq-01", metric="pm25", ts=now - timedelta(minutes=3), value=1.0)
        telemetry = TelemetryBatch(v=1, gateway="tn-gw-01", seq=1, sent_at=now, readings=[reading])
        pack = json.dumps([{"bn": "urn:dev:sw:tn-aq-01:", "bt": (now - timedelta(minutes=2)).timestamp(),
                            "n": "pm25", "u": "ug/m3", "v": 2.0}, {"n": "pm25", "t": 60, "v": 3.0}]).encode()
        topic = topics.senml("thong-nhat", "tn-gw-01")
        unsequenced = classify_senml(topic, pack, now, load_registry(), TimeWindow())
        assert isinstance(unsequenced, ValidBatch) and not unsequenced.sequenced
        store.write([ValidBatch(site="thong-nhat", topic=topics.telemetry("thong-nhat", "tn-gw-01"),
                                received_at=now, batch=telemetry, raw=encode(telemetry))], [])
        store.write([unsequenced], [])
        store.write([unsequenced], [])  # a redelivery: nothing new to mirror
        writer = InfluxWriter(vm.url, "token", "smartward", "smartward", timeout_ms=5000)
        m = InfluxMirror(store, writer, batch_rows=500, retry_initial_s=0.05, retry_max_s=0.5)
        assert m.catch_up(timeout_s=30)
        (series,) = vm.wait_for_points('{__name__="pm25_value"}', count=3, timeout_s=20)
        assert series.labels == {"__name__": "pm25_value", "site": "thong-nhat", "gateway": "tn-gw-01",
                                 "sensor": "tn-aq-01", "quality": "good"}
        assert sorted(zip(series.timestamps_ms, series.values, strict=True)) == [
            (int((now - timedelta(minutes=k)).timestamp() * 1000), v)
            for k, v in ((3, 1.0), (2, 2.0), (1, 3.0))]
