"""The load of ``smartward bench alerts`` (and ``--notify``): telemetry planned from the simulators
with combustible-gas readings injected at known times, published QoS 1, and a feed that times
when each injected alert reached the live stream."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from contract import topics
from contract.brokers import BrokerUrl
from contract.codec import decode_ack, encode
from contract.models import Reading, TelemetryBatch
from contract.registry import Registry
from ops_center.adapters.records import AlertRecord
from ops_center.feed import EventKind, Feed, FeedEvent

if TYPE_CHECKING:  # paho-mqtt: imported when the benchmark runs, so --help works without it
    import paho.mqtt.client as mqtt

WINDOW_S = 300.0  # simulated seconds per batch and gateway (under the 600 s lateness limit)
GAS_SENSORS = ("ax-gas-01", "ax-gas-02", "ax-gas-03", "ax-gas-04")
INJECT_LEL = 50.0


class TimedFeed(Feed):
    """The live-stream feed, noting when each alert of a gas detector reaches it."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[tuple[str, float], float] = {}
        self._seen_lock = threading.Lock()

    def publish(self, kind: EventKind, site: str | None, data: Mapping[str, object]) -> FeedEvent:
        event = super().publish(kind, site, data)
        if kind == "alert":
            alert = data.get("alert")  # the record the ops service wrote (ops_center/service/persist.py)
            if isinstance(alert, AlertRecord) and alert.sensor in GAS_SENSORS and data.get("action") in (
                    "raised", "reopened", "escalated"):
                key = (alert.sensor, alert.updated_at.timestamp())
                with self._seen_lock:
                    self.seen.setdefault(key, time.monotonic())
        return event


@dataclass(frozen=True, slots=True)
class Planned:
    topic: str
    gateway: str
    seq: int
    readings: int
    payload: bytes
    due_s: float  # seconds after the start of the load
    injected: tuple[tuple[str, float], ...]  # (sensor, epoch s) of the threshold crossings inside


def plan_load(registry: Registry, rate: float, seconds: float, *, inject_every_s: float,
              start: datetime) -> list[Planned]:
    """Batches of every gateway over a window of simulated time, with gas alarms injected
    every ``inject_every_s`` simulated seconds, each due when the cumulated readings reach
    ``rate`` per second."""
    from simulators.fleet import fleet

    per_sim_s = sum(len(s.metrics) / s.interval_s for _, gw in registry.iter_gateways() for s in gw.sensors)
    sim_s = rate * seconds / per_sim_s
    sims = fleet(registry, seed=7, start=start)
    batches: list[tuple[float, str, str, list[Reading]]] = []
    inject_at = {start.timestamp() + k * inject_every_s: GAS_SENSORS[k % len(GAS_SENSORS)]
                 for k in range(1, int(sim_s // inject_every_s) + 1)}
    steps = int(sim_s // WINDOW_S) + 1
    for site, gw in registry.iter_gateways():
        sim = sims[gw.id]
        for k in range(1, steps + 1):
            until = start + timedelta(seconds=k * WINDOW_S)
            rs = sim.advance(until)
            if rs:
                batches.append((until.timestamp(), site.id, gw.id, rs))
    batches.sort(key=lambda b: b[0])
    total = sum(len(b[3]) for b in batches)
    out: list[Planned] = []
    seqs: dict[str, int] = {}
    cumulated = 0
    pending_inject = sorted(inject_at.items())
    for end_ts, site_id, gw_id, rs in batches:
        injected: list[tuple[str, float]] = []
        readings: list[Reading] = []
        for r in rs:
            reading = r
            if r.sensor in GAS_SENSORS and r.metric == "gas_lel":
                ts = r.ts.timestamp()
                hit = next(((t, s) for t, s in pending_inject if s == r.sensor and t <= ts), None)
                if hit is not None:
                    pending_inject.remove(hit)
                    reading = Reading(r.sensor, r.metric, r.ts, INJECT_LEL, r.quality)
                    injected.append((r.sensor, ts))
            readings.append(reading)
        seqs[gw_id] = seqs.get(gw_id, 0) + 1
        sent = datetime.fromtimestamp(end_ts, UTC)
        payload = encode(TelemetryBatch(v=1, gateway=gw_id, seq=seqs[gw_id], sent_at=sent, readings=readings))
        cumulated += len(readings)
        out.append(Planned(topics.telemetry(site_id, gw_id), gw_id, seqs[gw_id], len(readings), payload,
                           cumulated / rate if total else 0.0, tuple(injected)))
    return out


class Load:
    """Publishes the plan on time from one thread; watches the ack watermarks."""

    def __init__(self, url: str, registry: Registry) -> None:
        from mqttlink.client import SessionOptions, connect, new_client

        b = BrokerUrl.parse(url)
        options = SessionOptions(client_id=f"smartward-bench-{os.getpid()}")
        self.client = new_client(b, options)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.on_message = self._on_ack
        self.client.on_connect = lambda c, *_a: c.subscribe(topics.subscription("ack"), qos=1)
        self.marks: dict[str, int] = {}
        self.cond = threading.Condition()
        self.published_at: dict[tuple[str, float], float] = {}
        self.first_s = 0.0
        self.last_s = 0.0
        self.behind_max_s = 0.0
        connect(self.client, b, options)
        self.client.loop_start()
        self.registry = registry

    def _on_ack(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            gw = topics.parse(msg.topic).gateway
            seq = decode_ack(bytes(msg.payload)).seq if msg.payload else 0
        except Exception:  # a foreign retained message: not ours to judge
            return
        with self.cond:
            self.marks[gw] = max(self.marks.get(gw, 0), seq)
            self.cond.notify_all()

    def run(self, plan: Sequence[Planned]) -> None:
        t0 = time.monotonic()
        self.first_s = t0
        infos = []
        for p in plan:
            delay = t0 + p.due_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # pacing the load, not a synchronisation
            else:
                self.behind_max_s = max(self.behind_max_s, -delay)
            now = time.monotonic()
            for key in p.injected:
                self.published_at[key] = now
            infos.append(self.client.publish(p.topic, p.payload, qos=1))
        for info in infos[-1000:]:
            info.wait_for_publish(timeout=30)
        self.last_s = time.monotonic()

    def warm_up(self, first: Planned, timeout_s: float = 30.0) -> None:
        """Publish the first batch until the ingest acknowledges it: its subscription is then
        granted (the load's own copy of that batch is a duplicate, a no-op everywhere)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.client.publish(first.topic, first.payload, qos=1)
            with self.cond:
                if self.cond.wait_for(lambda: self.marks.get(first.gateway, 0) >= first.seq, timeout=1.0):
                    return
        raise TimeoutError("the ingest never acknowledged the first batch")

    def wait_acks(self, last: Mapping[str, int], timeout_s: float) -> float:
        with self.cond:
            ok = self.cond.wait_for(lambda: all(self.marks.get(g, 0) >= s for g, s in last.items()),
                                    timeout=timeout_s)
        if not ok:
            raise TimeoutError(f"ingest did not store everything in {timeout_s:.0f} s: {self.marks} < {last}")
        return time.monotonic()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
