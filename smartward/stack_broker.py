"""The broker of a one-process stack (smartward/stack.py) and of the benchmarks: a private
Mosquitto on a free loopback port with the shipped configuration, or an amqtt broker in a
thread (``smartward demo``); and the helper that clears a run's retained messages."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from contract import topics
from contract.brokers import BrokerUrl
from contract.registry import Registry
from mqttlink.client import SessionOptions, connected_client
from smartward.mosquitto_config import SHIPPED_CONFIG, render_mosquitto_config

HOST = "127.0.0.1"


class StackError(Exception):
    """The stack cannot start or a wait ran out."""


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, deadline: float, alive: Callable[[], bool]) -> None:
    while time.monotonic() < deadline:
        if not alive():
            raise StackError("the broker exited at start")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.2):
            return
        time.sleep(0.02)  # a process we started has no readiness event: a bounded poll
    raise StackError(f"no broker on {HOST}:{port} in time")


class MosquittoBroker:
    """A private Mosquitto on a free port, from the project's configuration file."""

    def __init__(self, workdir: Path, *, binary: str = "/usr/sbin/mosquitto",
                 config: Path = SHIPPED_CONFIG) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.binary = binary
        data = workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "mosquitto.log"
        self.config_path = workdir / "mosquitto.conf"
        try:
            template = config.read_text()
        except OSError as exc:
            raise StackError(f"no broker configuration at {config}: {exc}") from exc
        self.config_path.write_text(render_mosquitto_config(template, port=self.port, data_dir=data,
                                                            log_dest=f"file {self.log_path}"))
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{HOST}:{self.port}"

    def start(self, timeout_s: float = 15.0) -> MosquittoBroker:
        try:
            self._proc = subprocess.Popen([self.binary, "-c", str(self.config_path)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=True)
        except OSError as exc:
            raise StackError(f"cannot run mosquitto ({self.binary}): {exc}") from exc
        proc = self._proc
        _wait_port(self.port, time.monotonic() + timeout_s, lambda: proc.poll() is None)
        return self

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None


class EmbeddedBroker:
    """amqtt in a background thread (its own event loop)."""

    def __init__(self) -> None:
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._broker: Any = None
        self._thread = threading.Thread(target=self._run, name="amqtt-broker", daemon=True)

    @property
    def url(self) -> str:
        # amqtt 0.12 speaks MQTT 3.1.1 only: every component connects with that protocol.
        return f"mqtt://{HOST}:{self.port}?protocol=3.1.1"

    def _run(self) -> None:
        from amqtt.broker import Broker

        asyncio.set_event_loop(self._loop)
        config = {"listeners": {"default": {"type": "tcp", "bind": f"{HOST}:{self.port}"}},
                  "auth": {"allow-anonymous": True, "plugins": ["auth_anonymous"]},
                  "topic-check": {"enabled": False}}
        try:
            self._broker = Broker(config, loop=self._loop)
            self._loop.run_until_complete(self._broker.start())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()

    def start(self, timeout_s: float = 15.0) -> EmbeddedBroker:
        self._thread.start()
        if not self._ready.wait(timeout_s) or self._error is not None:
            raise StackError(f"the embedded broker did not start: {self._error}")
        return self

    def stop(self) -> None:
        if self._broker is not None and self._loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
            with contextlib.suppress(Exception):
                fut.result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


def clear_retained(url: str, registry: Registry, timeout_s: float = 10.0) -> None:
    """Remove the retained status and ack of every gateway (an empty retained message,
    MQTT-3.3.1-10): a run on a shared broker must not inherit a previous run's watermarks,
    which would let a fresh edge delete batches nobody stored."""
    b = BrokerUrl.parse(url)
    c = connected_client(b, SessionOptions(client_id=f"smartward-clear-{uuid.uuid4().hex[:8]}"))
    c.loop_start()
    try:
        infos = [c.publish(topics.build(site.id, gw.id, kind), b"", qos=1, retain=True)
                 for site, gw in registry.iter_gateways() for kind in ("status", "ack")]
        deadline = time.monotonic() + timeout_s
        for info in infos:
            info.wait_for_publish(timeout=max(0.1, deadline - time.monotonic()))
    finally:
        c.disconnect()
        c.loop_stop()
