"""Mosquitto brokers for tests, started from the project's own configuration.

``deploy/mosquitto/smartward.conf`` is rendered by the product's renderer
(smartward/mosquitto_config.py) with a free loopback port, a private data directory and the log
on stdout, so every test runs the configuration that ships (never the system broker on 1883).

Fixtures:
    mosquitto         (function) factory: ``mosquitto(queue_defaults=False, overrides=None,
                      credentials=None)``
                      -> a started :class:`MosquittoServer`; all are stopped at teardown
    recording_ingest  (function) factory: ``recording_ingest(url, **options)`` -> a started
                      :class:`RecordingIngest`; all are stopped at teardown

A missing ``mosquitto`` binary is a failure under CI (``CI=true``) and a skip elsewhere.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from contract import topics
from contract.codec import decode_status, decode_telemetry, encode
from contract.errors import ContractError
from contract.models import Ack, Status, TelemetryBatch
from smartward.mosquitto_config import HOST, SHIPPED_CONFIG, render_mosquitto_config
from tests.servers._proc import (
    ServerError,
    free_port,
    kill9,
    log_tail_message,
    missing_server,
    start_process,
    stop_process,
    wait_for_port,
)

# The queue settings that `queue_defaults=True` removes, leaving Mosquitto's defaults
# (1000 messages, no byte limit).
QUEUE_KEYS = ("max_queued_messages", "max_queued_bytes")


def mosquitto_binary() -> str:
    """The broker program: ``SMARTWARD_MOSQUITTO``, /usr/sbin/mosquitto or on the PATH."""
    candidates = (os.environ.get("SMARTWARD_MOSQUITTO"), "/usr/sbin/mosquitto", shutil.which("mosquitto"))
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    missing_server("mosquitto", "no mosquitto binary (apt-get install mosquitto)")


class MosquittoServer:
    """One broker process on a fixed port and data directory, across restarts."""

    host = HOST

    def __init__(self, binary: str, workdir: Path, config: str, port: int) -> None:
        self.binary = binary
        self.port = port
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "mosquitto.log"
        self.config_path = workdir / "mosquitto.conf"
        self.config_path.write_text(config)
        self._proc: Any = None

    @property
    def url(self) -> str:
        return f"mqtt://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, *, timeout_s: float = 15.0) -> None:
        if self.running:
            raise ServerError(f"mosquitto on {self.port} is already running")
        self._proc = start_process([self.binary, "-c", str(self.config_path)], self.log_path)
        wait_for_port(HOST, self.port, timeout_s=timeout_s, proc=self._proc, log_path=self.log_path)

    def stop(self) -> None:
        """SIGTERM: Mosquitto saves its persistence file and exits."""
        if self._proc is not None:
            stop_process(self._proc)
            self._proc = None

    def reload(self) -> None:
        """SIGHUP: Mosquitto re-reads its password file and ACL and reopens its log."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGHUP)

    def kill9(self) -> None:
        """A crash: nothing since the last autosave is on disk."""
        if self._proc is not None:
            kill9(self._proc)
            self._proc = None

    def restart(self) -> None:
        """Start again on the same port and data directory (stopping first if running)."""
        self.stop()
        self.start()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def describe(self) -> str:
        return f"mosquitto {self.url}{log_tail_message(self.log_path)}"


MosquittoFactory = Callable[..., MosquittoServer]


@pytest.fixture
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoFactory]:
    binary = mosquitto_binary()
    template = SHIPPED_CONFIG.read_text()
    servers: list[MosquittoServer] = []

    def make(*, queue_defaults: bool = False, overrides: Mapping[str, str | None] | None = None,
             start: bool = True, credentials: Path | None = None) -> MosquittoServer:
        changes: dict[str, str | None] = dict.fromkeys(QUEUE_KEYS) if queue_defaults else {}
        changes.update(overrides or {})
        port = free_port(HOST)
        workdir = tmp_path_factory.mktemp("mosquitto")
        server = MosquittoServer(binary, workdir,
                                 render_mosquitto_config(template, port=port,
                                                         data_dir=workdir / "data",
                                                         # the fixture reads the log from stdout
                                                         log_dest="stdout", overrides=changes,
                                                         credentials=credentials), port)
        servers.append(server)
        if start:
            server.start()
        return server

    yield make
    for server in servers:
        server.stop()


# --- a stand-in ingest -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Arrival:
    gateway: str
    seq: int
    payload: bytes
    at: float  # time.monotonic() when it arrived


class RecordingIngest:
    """Subscribes to every gateway's telemetry and status, records each batch, and publishes
    the retained ack watermark: the highest contiguous seq received, counting the seqs a
    gateway declared dropped (``dropped_through`` in its status), as docs/contract.md defines it.

    It stores nothing durably: it is the platform as a test sees it. ``persistent=False``
    (the default) connects with a clean start and no session, so a broker restart loses
    whatever was queued for it, the harshest case for the edge.
    """

    def __init__(self, url: str, *, client_id: str = "test-ingest", persistent: bool = False,
                 acking: bool = True, auto_reconnect: bool = True) -> None:
        parts = url.split("://", 1)[-1].rsplit(":", 1)
        self._host, self._port = parts[0], int(parts[1])
        self._persistent = persistent
        self._cond = threading.Condition()
        self.arrivals: list[Arrival] = []
        self.statuses: dict[str, list[Status]] = defaultdict(list)
        self._seqs: dict[str, set[int]] = defaultdict(set)
        self._marks: dict[str, int] = defaultdict(int)
        self._sites: dict[str, str] = {}
        self._acking = acking
        self._ack_limit: int | None = None
        self.errors: list[str] = []
        self.connects = 0
        # auto_reconnect=False: after a broker crash it stays away until reconnect(), so a
        # test decides what it misses.
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                                   reconnect_on_failure=auto_reconnect)
        self._client.reconnect_delay_set(min_delay=1, max_delay=1)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, *, timeout_s: float = 10.0) -> RecordingIngest:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600 if self._persistent else 0
        self._client.connect(self._host, self._port, keepalive=10, clean_start=not self._persistent,
                             properties=props)
        self._client.loop_start()
        self.wait_for(lambda: self.connects > 0, timeout_s, "ingest connected")
        return self

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def reconnect(self, *, timeout_s: float = 10.0) -> None:
        """Connect again (after a broker restart), keeping everything recorded so far."""
        before = self.connects
        self._client.loop_stop()
        self._client.reconnect()
        self._client.loop_start()
        self.wait_for(lambda: self.connects > before, timeout_s, "ingest reconnected")

    def __enter__(self) -> RecordingIngest:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- callbacks (paho's thread; never raise) ----------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        if rc.is_failure:
            return
        client.subscribe([(topics.subscription("telemetry"), 1), (topics.subscription("status"), 1)])
        with self._cond:
            self.connects += 1
            marks = dict(self._marks)
            self._cond.notify_all()
        for gateway, mark in marks.items():
            self._publish_ack(gateway, mark)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = topics.parse(msg.topic)
            payload = bytes(msg.payload)
            if topic.kind == "telemetry":
                batch = decode_telemetry(payload)
                with self._cond:
                    self._sites[topic.gateway] = topic.site
                    self.arrivals.append(Arrival(batch.gateway, batch.seq, payload, time.monotonic()))
                    self._seqs[batch.gateway].add(batch.seq)
                    changed = self._advance(batch.gateway, 0)
                    self._cond.notify_all()
            elif topic.kind == "status":
                status = decode_status(payload)
                with self._cond:
                    self._sites[topic.gateway] = topic.site
                    self.statuses[status.gateway].append(status)
                    changed = self._advance(status.gateway, status.dropped_through)
                    self._cond.notify_all()
            else:
                return
            if changed:
                self._publish_ack(topic.gateway, self.watermark(topic.gateway))
        except (ContractError, ValueError) as exc:
            with self._cond:
                self.errors.append(f"{msg.topic}: {exc}")
                self._cond.notify_all()

    def _advance(self, gateway: str, dropped_through: int) -> bool:
        mark = start = self._marks[gateway]
        mark = max(mark, dropped_through)
        seqs = self._seqs[gateway]
        while mark + 1 in seqs:
            mark += 1
        self._marks[gateway] = mark
        return mark != start

    def _publish_ack(self, gateway: str, mark: int) -> None:
        with self._cond:
            if not self._acking or gateway not in self._sites:
                return
            if self._ack_limit is not None:
                mark = min(mark, self._ack_limit)
            site = self._sites[gateway]
        self._client.publish(topics.ack(site, gateway), encode(Ack(v=1, seq=mark)), qos=1, retain=True)

    # -- for tests ---------------------------------------------------------------------------------

    def set_acking(self, acking: bool, *, limit: int | None = None) -> None:
        """Turn the watermark on or off; with ``limit`` it never passes that seq."""
        with self._cond:
            self._acking, self._ack_limit = acking, limit
            marks = dict(self._marks)
        for gateway, mark in marks.items():
            self._publish_ack(gateway, mark)

    def watermark(self, gateway: str) -> int:
        with self._cond:
            return self._marks[gateway]

    def seqs(self, gateway: str) -> set[int]:
        with self._cond:
            return set(self._seqs[gateway])

    def batches(self, gateway: str) -> dict[int, TelemetryBatch]:
        """Each seq's batch (first copy)."""
        with self._cond:
            arrivals = [a for a in self.arrivals if a.gateway == gateway]
        out: dict[int, TelemetryBatch] = {}
        for a in arrivals:
            out.setdefault(a.seq, decode_telemetry(a.payload))
        return out

    def copies(self, gateway: str) -> dict[int, set[bytes]]:
        """Every distinct payload received per seq (a correct edge re-sends identical bytes)."""
        with self._cond:
            out: dict[int, set[bytes]] = defaultdict(set)
            for a in self.arrivals:
                if a.gateway == gateway:
                    out[a.seq].add(a.payload)
            return dict(out)

    def last_status(self, gateway: str) -> Status | None:
        with self._cond:
            return self.statuses[gateway][-1] if self.statuses[gateway] else None

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
        """Until ``predicate()`` holds (checked at every message); AssertionError at the deadline."""
        with self._cond:
            if not self._cond.wait_for(predicate, timeout=timeout_s):
                raise AssertionError(f"ingest: {what}: not after {timeout_s} s "
                                     f"(marks {dict(self._marks)}, arrivals {len(self.arrivals)})")


IngestFactory = Callable[..., RecordingIngest]


@pytest.fixture
def recording_ingest() -> Iterator[IngestFactory]:
    ingests: list[RecordingIngest] = []

    def make(url: str, **options: Any) -> RecordingIngest:
        ingest = RecordingIngest(url, **options)
        ingests.append(ingest)
        return ingest.start()

    yield make
    for ingest in ingests:
        ingest.stop()
