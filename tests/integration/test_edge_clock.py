"""A gateway that boots in 1970 (no battery-backed clock) and gets the time later loses no
reading and sends nothing the ingest refuses for its time: a real Modbus device, a real
Mosquitto, the agent, and a clock the test sets."""

from __future__ import annotations

import itertools
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from contract import topics
from contract.codec import decode_telemetry
from edge.app import open_agent
from edge.clockguard import ClockGuard
from edge.drivers.modbus import ModbusDriver
from ingest.pipeline import TimeWindow, ValidBatch, classify
from tests.servers.mosquitto import IngestFactory, MosquittoFactory
from tests.support.edge import quick_settings, running
from tests.support.registry import modbus_tcp_sensor, ward_registry

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

GW = "tn-gw-09"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class SettableClock:
    """Runs at real speed from 1970-01-01 00:00:30 until ``set_now`` puts it on real time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._base = EPOCH + timedelta(seconds=30)
        self._t0 = time.monotonic()

    def now(self) -> datetime:
        with self._lock:
            return self._base + timedelta(seconds=time.monotonic() - self._t0)

    def real_seconds_until(self, t: datetime) -> float:
        return (t - self.now()).total_seconds()

    def set_now(self) -> None:
        with self._lock:
            self._base, self._t0 = datetime.now(UTC), time.monotonic()


def test_a_gateway_booted_in_1970_sends_every_reading_at_its_real_time(
    tmp_path: Path, mosquitto: MosquittoFactory, recording_ingest: IngestFactory, modbus_devices: Any
) -> None:
    dev = modbus_devices()
    dev.set_holding(1, 0, [555])
    registry = ward_registry(GW, modbus_tcp_sensor("tn-flood-01", dev.port, interval_s=1))
    broker = mosquitto()
    ingest = recording_ingest(broker.url)
    clock = SettableClock()
    settings = quick_settings(tmp_path, broker.url)
    guard = ClockGuard(state_file=tmp_path / "clock-floor")
    driver = ModbusDriver(registry.sensors_of(GW), clock)
    real_start = datetime.now(UTC)
    with open_agent(settings, registry, GW, clock=clock, driver=driver, guard=guard) as agent:
        driver.start()
        try:
            with running(agent):
                held = agent.wait_until(lambda s: s.counters.readings >= 4, 20)
                assert held.counters.batches_created == 0  # nothing sealed with a 1970 time
                assert held.counters.clock_untrusted_polls > 0
                clock.set_now()  # NTP answers
                stats = agent.wait_until(lambda s: s.counters.readings_restamped >= 4
                                         and s.outbox.batches == 0
                                         and s.counters.readings >= held.counters.readings + 2, 20)
        finally:
            driver.close()
    real_end = datetime.now(UTC)
    site_topic = topics.telemetry("thong-nhat", GW)
    readings = []
    for payloads in ingest.copies(GW).values():
        for raw in payloads:
            verdict = classify(site_topic, raw, datetime.now(UTC), registry, TimeWindow())
            assert isinstance(verdict, ValidBatch), verdict  # never a time_window dead letter
            readings.extend(decode_telemetry(raw).readings)
    assert len(readings) >= stats.counters.readings_restamped  # none lost
    times = sorted(r.ts for r in readings)
    assert real_start - timedelta(seconds=2) <= times[0] and times[-1] <= real_end + timedelta(seconds=1)
    # one reading a second, as the device was polled: the held ones keep their spacing
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert all(0.5 < g < 1.8 for g in gaps), gaps
    assert {r.value for r in readings} == {55.5}
