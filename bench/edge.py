"""How many readings per second one edge agent publishes to a broker.

    python -m bench.edge --url mqtt://127.0.0.1:1883 --readings 200000 --batch 500

A driver hands the agent readings as fast as it polls (``--per-poll`` at a time); a small
acker in the same process plays the ingest (subscribes to the gateway's telemetry and
publishes the retained ack watermark), so the outbox drains as in production. Everything
runs as a gateway would: sealed batches are committed to the SQLite outbox (fsync) before
they are published with QoS 1. Two rates are printed: readings PUBACKed by the broker per
second, and readings covered by the ack watermark (deleted from the outbox) per second.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from contract import topics
from contract.brokers import BrokerUrl
from contract.codec import decode_telemetry, encode
from contract.models import Ack, Reading
from contract.registry import load_registry
from edge.clock import SystemClock

if TYPE_CHECKING:  # paho-mqtt: imported when the benchmark runs, so --help works without it
    import paho.mqtt.client as mqtt

T0 = datetime(2026, 11, 28, tzinfo=UTC)


class FloodDriver:
    """``total`` readings of the gateway's sensors, ``per_poll`` per poll, as fast as asked."""

    def __init__(self, series: Sequence[tuple[str, str]], total: int, per_poll: int) -> None:
        self._series = series
        self._total = total
        self._per_poll = per_poll
        self._made = 0

    def poll(self, now: datetime) -> list[Reading]:
        n = min(self._per_poll, self._total - self._made)
        out = []
        for i in range(self._made, self._made + n):
            sensor, metric = self._series[i % len(self._series)]
            out.append(Reading(sensor, metric, T0 + timedelta(milliseconds=i), 20.0 + i % 97 * 0.5))
        self._made += n
        return out


class Acker:
    """The ingest's part: highest contiguous seq received -> retained ack watermark."""

    def __init__(self, url: BrokerUrl, site: str, gateway: str) -> None:
        self._ack_topic = topics.ack(site, gateway)
        self._status_topic = topics.status(site, gateway)
        self._seqs: set[int] = set()
        self.mark = 0
        self._connected = threading.Event()
        from mqttlink.client import SessionOptions, connect, new_client

        options = SessionOptions(client_id=f"bench-acker-{gateway}")
        self.client = new_client(url, options)
        self._telemetry_topic = topics.telemetry(site, gateway)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        connect(self.client, url, options)
        self.client.loop_start()
        if not self._connected.wait(10):
            raise RuntimeError(f"bench acker cannot connect to {url}")
        self.clear()  # a retained watermark from an earlier run would be ahead of a new outbox

    def clear(self) -> None:
        for topic in (self._ack_topic, self._status_topic):
            self.client.publish(topic, b"", qos=1, retain=True).wait_for_publish(10)

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        client.subscribe(self._telemetry_topic, qos=1)
        self._connected.set()

    def _on_message(self, client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        seq = decode_telemetry(bytes(msg.payload)).seq
        self._seqs.add(seq)
        mark = self.mark
        while mark + 1 in self._seqs:
            self._seqs.discard(mark + 1)
            mark += 1
        if mark != self.mark:
            self.mark = mark
            client.publish(self._ack_topic, encode(Ack(v=1, seq=mark)), qos=1, retain=True)

    def close(self) -> None:
        self.clear()
        self.client.disconnect()
        self.client.loop_stop()


def run(url: str, *, gateway: str, readings: int, batch: int, per_poll: int, window: int) -> dict[str, Any]:
    from edge.app import open_agent
    from edge.settings import EdgeSettings

    registry = load_registry()
    site = registry.site_of(gateway)
    if site is None:
        raise SystemExit(f"unknown gateway {gateway}")
    series = [(s.id, m) for s in registry.sensors_of(gateway) for m in s.metrics]
    broker = BrokerUrl.parse(url)
    acker = Acker(broker, site, gateway)
    try:
        with tempfile.TemporaryDirectory(prefix="smartward-bench-") as outbox:
            settings = EdgeSettings(mqtt_url=url, edge_outbox=outbox, edge_batch_max_readings=batch,
                                    edge_poll_interval_ms=1, edge_flush_interval_ms=1000, edge_window=window,
                                    edge_live_reserve=max(1, window // 4), edge_status_interval_s=60)
            driver = FloodDriver(series, readings, per_poll)
            with open_agent(settings, registry, gateway, clock=SystemClock(), driver=driver) as agent:
                thread = threading.Thread(target=agent.run, name="bench-agent")
                t0 = time.perf_counter()
                thread.start()
                try:
                    agent.wait_until(lambda s: s.counters.readings == readings
                                     and 0 < s.counters.batches_created <= s.counters.batches_published, 600)
                    t_pub = time.perf_counter() - t0
                    stats = agent.wait_until(lambda s: s.outbox.batches == 0
                                             and s.counters.readings == readings, 600)
                    t_ack = time.perf_counter() - t0
                finally:
                    agent.stop()
                    thread.join()
    finally:
        acker.close()
    c = stats.counters
    return {
        "broker": str(broker), "gateway": gateway, "readings": readings, "batch_max_readings": batch,
        "per_poll": per_poll, "window": window, "batches": c.batches_created,
        "seconds_to_puback": round(t_pub, 3), "seconds_to_watermark": round(t_ack, 3),
        "readings_per_s_puback": round(readings / t_pub), "readings_per_s_watermark": round(readings / t_ack),
        "batches_per_s": round(c.batches_created / t_ack, 1), "resent": c.batches_resent,
    }


def main(argv: Sequence[str] | None = None) -> int:
    if argv is not None and any(a == "--drivers" or a.startswith("--drivers=") for a in argv):
        # The edge budget with real device drivers (docs/performance.md).
        from bench.edge_modbus import main as modbus_main

        return modbus_main(argv)
    parser = argparse.ArgumentParser(prog="python -m bench.edge",
                                     description="Đo thông lượng tác tử biên / edge agent throughput")
    parser.add_argument("--url", default="mqtt://127.0.0.1:1883", help="broker (default %(default)s)")
    parser.add_argument("--gateway", default="tn-gw-01")
    parser.add_argument("--readings", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=500, help="readings per batch (default %(default)s)")
    parser.add_argument("--per-poll", type=int, default=5000, help="readings per driver poll")
    parser.add_argument("--window", type=int, default=32, help="batches awaiting PUBACK")
    args = parser.parse_args(argv)
    result = run(args.url, gateway=args.gateway, readings=args.readings, batch=args.batch,
                 per_poll=args.per_poll, window=args.window)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
