"""Helpers for the ingest's integration tests (no tests here): a broker, a gateway-like
publisher, an ack-watermark watcher, and a worker started as a real subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from contract import topics
from contract.codec import decode_ack, encode
from contract.models import Reading, Status, TelemetryBatch
from contract.registry import Registry, load_registry
from tests.support.ports import free_port

REPO = Path(__file__).resolve().parents[2]
REGISTRY = load_registry()


@pytest.fixture
def broker(mosquitto: Callable[..., Any]) -> Any:
    """A Mosquitto with the project's config (deploy/mosquitto) on a free port."""
    return mosquitto()


def broker_url(b: Any) -> str:
    return str(b.url)


def mqtt_client(url: str, client_id: str) -> mqtt.Client:
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.connect(host, int(port))
    c.loop_start()
    return c


def gateways(
    registry: Registry = REGISTRY, n: int | None = None
) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(site, gateway, [(sensor, metric)...]) of the registry's gateways that have sensors."""
    out = []
    for site, gw in registry.iter_gateways():
        pairs = [(s.id, m) for s in gw.sensors for m in s.metrics]
        if pairs:
            out.append((site.id, gw.id, pairs))
    return out[:n] if n else out


class Publisher:
    """Publishes telemetry batches like an edge agent (QoS 1), with unique reading times."""

    def __init__(
        self,
        url: str,
        *,
        client_id: str = "test-publisher",
        readings_per_batch: int = 20,
        base: datetime | None = None,
    ) -> None:
        self.client = mqtt_client(url, client_id)
        self.per_batch = readings_per_batch
        self.base = base or datetime.now(UTC) - timedelta(days=1)
        self.counter = 0

    def batch(self, site: str, gateway: str, pairs: list[tuple[str, str]], seq: int) -> bytes:
        readings = []
        for i in range(self.per_batch):
            sensor, metric = pairs[i % len(pairs)]
            # unique per (sensor, metric): the seq and the index set the time
            ts = self.base + timedelta(milliseconds=seq * self.per_batch + i)
            readings.append(Reading(sensor=sensor, metric=metric, ts=ts, value=float(seq) + i / 1000))
        b = TelemetryBatch(v=1, gateway=gateway, seq=seq, sent_at=datetime.now(UTC), readings=readings)
        return encode(b)

    def publish(self, site: str, gateway: str, payload: bytes) -> mqtt.MQTTMessageInfo:
        return self.client.publish(topics.telemetry(site, gateway), payload, qos=1)

    def send(self, site: str, gateway: str, pairs: list[tuple[str, str]], seqs: range | list[int]) -> None:
        infos = [self.publish(site, gateway, self.batch(site, gateway, pairs, s)) for s in seqs]
        for info in infos:
            info.wait_for_publish(timeout=30)

    def status(self, site: str, gateway: str, *, dropped_through: int, last_seq: int) -> None:
        st = Status(
            v=1,
            gateway=gateway,
            state="online",
            ts=datetime.now(UTC),
            dropped_through=dropped_through,
            dropped_batches=dropped_through,
            last_seq=last_seq,
        )
        self.client.publish(topics.status(site, gateway), encode(st), qos=1, retain=True).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class AckWatcher:
    """Subscribes to every ack topic; ``wait_for(gateway, seq)`` blocks on a condition."""

    def __init__(self, url: str, client_id: str = "test-ack-watcher") -> None:
        self.marks: dict[str, int] = {}
        self.history: dict[str, list[int]] = {}
        self.retained: dict[str, bool] = {}
        self.cond = threading.Condition()
        host, port = url.split("://", 1)[1].rsplit(":", 1)
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        c.on_message = self._on_message
        c.on_connect = lambda cl, *_: cl.subscribe(topics.subscription("ack"), qos=1)
        c.connect(host, int(port))
        c.loop_start()
        self.client = c

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        gw = topics.parse(msg.topic).gateway
        seq = decode_ack(msg.payload).seq
        with self.cond:
            self.marks[gw] = max(seq, self.marks.get(gw, 0))
            self.history.setdefault(gw, []).append(seq)
            self.retained[gw] = bool(msg.retain)
            self.cond.notify_all()

    def wait_for(self, gateway: str, seq: int, timeout_s: float = 30) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.marks.get(gateway, 0) >= seq, timeout=timeout_s)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _module_name(request: pytest.FixtureRequest) -> str:
    return str(request.module.__name__).rsplit(".", 1)[-1]


@pytest.fixture
def pub(broker: Any, request: pytest.FixtureRequest) -> Iterator[Publisher]:
    """A gateway-like publisher on ``broker``, its client id named after the test module."""
    p = Publisher(broker_url(broker), client_id=f"{_module_name(request)}-pub")
    yield p
    p.close()


@pytest.fixture
def acks(broker: Any, request: pytest.FixtureRequest) -> Iterator[AckWatcher]:
    """Every ack the ingest publishes on ``broker``, its client id named after the test module."""
    a = AckWatcher(broker_url(broker), client_id=f"{_module_name(request)}-acks")
    yield a
    a.close()


class WorkerProcess:
    """``python -m ingest.cli run`` as a real process (for kill -9 and shared subscriptions)."""

    def __init__(
        self,
        log_dir: Path,
        env: dict[str, str],
        *,
        client_id: str,
        share_group: str | None = None,
        metrics_port: int | None = None,
    ) -> None:
        self.log_dir = log_dir
        self.env = {**os.environ, **env, "PYTHONPATH": str(REPO)}
        self.client_id = client_id
        self.args = ["--client-id", client_id]
        if share_group:
            self.args += ["--share-group", share_group]
        self.metrics_port = metrics_port if metrics_port is not None else free_port()
        self.args += ["--metrics-port", str(self.metrics_port)]
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = self.log_dir / f"{self.client_id}-{self.starts}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ingest.cli", "run", *self.args],
            env=self.env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )

    def ready(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/readyz", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout_s: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
