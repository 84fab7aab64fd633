"""The load side of ``smartward bench ingest``: deterministic gateway batches, the publishers
(paho as the edge, or ``mosquitto_pub``) and the tracker of ack watermarks (lag per batch)."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from bench.measure import cpu_seconds
from contract.registry import Registry


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


class Publisher:
    def publish(self, topic: str, payload: bytes) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        """Everything published so far is on its way."""

    def cpu_seconds(self) -> float:
        """CPU of publishing processes other than this one."""
        return 0.0

    def close(self) -> None:
        raise NotImplementedError


class PahoPublisher(Publisher):
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


class CliPublisher(Publisher):
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
        return sum(cpu_seconds(p.pid) for p in self.procs.values())

    def close(self) -> None:
        for p in self.procs.values():
            if p.stdin is not None:
                p.stdin.close()
        for p in self.procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()

