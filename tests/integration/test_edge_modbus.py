"""Modbus devices read by the edge agent over real protocol stacks: pymodbus servers on free
TCP ports, and an RTU server on one end of a ``socat`` pseudo-terminal pair.

Faults are real too: a device that goes away and comes back, one whose frames arrive
garbled, one that answers too late, one that answers with an exception code. The agent
keeps running, the other devices keep reporting, every failed read is counted, and no
value is ever made up.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest

from contract.models import Reading
from contract.registry import Registry
from edge.app import open_agent
from edge.clock import SystemClock
from edge.drivers.modbus import ModbusDriver
from tests.servers.modbus import ModbusDevice, SerialPair
from tests.servers.mosquitto import IngestFactory, MosquittoFactory
from tests.support.edge import quick_settings, received_readings, running
from tests.support.registry import modbus_tcp_sensor, ward_registry
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

GW = "tn-gw-09"


def registry(sensors: str) -> Registry:
    return ward_registry(GW, sensors)


def tcp_sensor(sid: str, port: int, *, address: int = 0, type_: str = "int16") -> str:
    return modbus_tcp_sensor(sid, port, unit=1, address=address, type_=type_, interval_s=1, timeout_s=0.5)


def f32_words(x: float) -> list[int]:
    u = struct.unpack(">I", struct.pack(">f", x))[0]
    return [u >> 16, u & 0xFFFF]


def test_one_request_reads_a_whole_map_of_types_word_orders_and_scales(modbus_devices: Any) -> None:
    dev: ModbusDevice = modbus_devices(units=(3,))
    dev.set_holding(3, 0, [1234])                        # int16 * 0.1 -> 123.4 cm
    dev.set_holding(3, 1, [0xFFFF])                      # int16 -> -1 * 0.1: outside [0, 300] -> bad
    dev.set_holding(3, 2, f32_words(12.5)[::-1])         # float32, words swapped
    dev.set_holding(3, 4, [0x0000, 0x03E8])              # uint32 -> 1000 * 0.01 = 10
    dev.set_input(3, 10, [55])
    reg = registry(f"""          - id: tn-ww-01
            kind: wastewater
            driver:
              type: modbus-tcp
              host: 127.0.0.1
              port: {dev.port}
              unit: 3
              registers:
                - {{metric: ww_ph, address: 2, type: float32, word_order: little, scale: 0.5}}
                - {{metric: ww_cod, address: 4, type: uint32, scale: 0.01}}
                - {{metric: ww_tss, table: input, address: 10, type: uint16}}
""" + modbus_tcp_sensor("tn-flood-01", dev.port, unit=3)
        + modbus_tcp_sensor("tn-flood-02", dev.port, unit=3, address=1))
    driver = ModbusDriver(reg.sensors_of(GW), SystemClock())
    assert len(driver.lines) == 1  # one connection for the three sensors of one device
    assert driver.requests == 2  # holding 0..5 in one request, input 10 in another
    rows = {(r.sensor, r.metric): r for r in driver.check()}
    assert dev.requests == 2
    assert rows["tn-flood-01", "water_level_cm"].value == pytest.approx(123.4)
    assert rows["tn-flood-01", "water_level_cm"].quality == "good"
    assert rows["tn-flood-02", "water_level_cm"].value == pytest.approx(-0.1)
    assert rows["tn-flood-02", "water_level_cm"].quality == "bad"
    assert rows["tn-ww-01", "ww_ph"].value == 6.25
    assert rows["tn-ww-01", "ww_cod"].value == pytest.approx(10)
    assert rows["tn-ww-01", "ww_tss"].value == 55


def test_faulty_devices_never_stop_the_others_nor_invent_a_value(
    tmp_path: Path, mosquitto: MosquittoFactory, recording_ingest: IngestFactory, modbus_devices: Any
) -> None:
    good = modbus_devices()
    outage = modbus_devices()
    garbled = modbus_devices()
    slow = modbus_devices()
    refusing = modbus_devices()
    for d, value in ((good, 100), (outage, 200), (garbled, 300), (slow, 400), (refusing, 500)):
        d.set_holding(1, 0, [value])
    garbled.garble = True
    slow.delay_s = 1.0  # the driver waits 0.5 s
    reg = registry(
        tcp_sensor("s-good", good.port) + tcp_sensor("s-outage", outage.port)
        + tcp_sensor("s-garbled", garbled.port) + tcp_sensor("s-slow", slow.port)
        # an int32 at the map's last register runs past it: exception code 2 (illegal address)
        + tcp_sensor("s-refusing", refusing.port, address=199, type_="int32"))
    broker = mosquitto()
    ingest = recording_ingest(broker.url)
    driver = ModbusDriver(reg.sensors_of(GW), SystemClock())
    settings = quick_settings(tmp_path, broker.url)
    with open_agent(settings, reg, GW, clock=SystemClock(), driver=driver) as agent:
        driver.start()
        try:
            with running(agent):
                def count(sensor: str) -> int:
                    return sum(r.sensor == sensor for r in received_readings(ingest, GW))

                wait_until(lambda: count("s-good") >= 2 and count("s-outage") >= 2, 20, "first readings")
                outage.stop()
                before = count("s-outage")
                seen = count("s-good")
                wait_until(lambda: count("s-good") >= seen + 3, 20, "good device keeps reporting")
                down_errors = agent.snapshot().counters.driver_errors
                outage.start()
                wait_until(lambda: count("s-outage") > before + 1, 20, "device back after its outage")
                stats = agent.wait_until(lambda s: s.counters.driver_errors >= down_errors + 3, 20)
        finally:
            driver.close()
    readings = received_readings(ingest, GW)
    by_sensor: dict[str, set[float]] = {}
    for r in readings:
        by_sensor.setdefault(r.sensor, set()).add(r.value)
    # Only what the devices hold, scaled: nothing from the faulty ones, nothing invented.
    assert by_sensor.pop("s-good") == {10.0}
    assert by_sensor.pop("s-outage") == {20.0}
    assert by_sensor == {}
    assert all(r.quality == "good" for r in readings)
    assert stats.counters.driver_errors >= 9  # three faulty devices, each poll, and the outage
    assert refusing.requests >= 2 and slow.requests >= 2  # asked again at each poll


def test_modbus_rtu_over_a_serial_line(serial_pair: SerialPair) -> None:
    dev = ModbusDevice((7, 8), serial=serial_pair.a, baudrate=19200).start()
    try:
        dev.set_input(7, 10, f32_words(12.5))
        dev.set_holding(8, 0, [1234])
        reg = registry(f"""          - id: tn-rain-01
            kind: rain_gauge
            driver:
              type: modbus-rtu
              port: {serial_pair.b}
              baudrate: 19200
              unit: 7
              timeout_s: 0.5
              registers: [{{metric: rain_mm_h, table: input, address: 10, type: float32}}]
          - id: tn-flood-01
            kind: flood_depth
            driver:
              type: modbus-rtu
              port: {serial_pair.b}
              baudrate: 19200
              unit: 8
              timeout_s: 0.5
              registers: [{{metric: water_level_cm, address: 0, type: int16, scale: 0.1}}]
          - id: tn-flood-02
            kind: flood_depth
            driver:
              type: modbus-rtu
              port: {serial_pair.b}
              baudrate: 19200
              unit: 9
              timeout_s: 0.5
              registers: [{{metric: water_level_cm, address: 0, type: int16}}]
""")
        driver = ModbusDriver(reg.sensors_of(GW), SystemClock())
        assert len(driver.lines) == 1  # one serial line shared by the three units
        rows = {r.sensor: r for r in driver.check()}
        assert rows["tn-rain-01"].value == 12.5
        assert rows["tn-flood-01"].value == pytest.approx(123.4)
        assert rows["tn-flood-02"].value is None and rows["tn-flood-02"].error  # unit 9 is not on the line
        # garbled frames (a bad CRC) are errors, and the line recovers after them
        dev.garble = True
        rows = {r.sensor: r for r in driver.check()}
        assert all(r.value is None and r.error for r in rows.values())
        dev.garble = False
        driver.start()
        try:
            got: list[Reading] = []
            wait_until(lambda: bool(got.extend(driver.poll(SystemClock().now()))) or
                     {r.sensor for r in got} >= {"tn-rain-01", "tn-flood-01"}, 20, "RTU polling")
            assert all(r.value == pytest.approx(123.4) for r in got if r.sensor == "tn-flood-01")
            assert not any(r.sensor == "tn-flood-02" for r in got)
            wait_until(lambda: driver.take_errors() > 0, 10, "unit 9 counted")
        finally:
            driver.close()
    finally:
        dev.stop()
