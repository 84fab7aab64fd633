"""The registry's per-sensor ``driver`` block (docs/contract.md "Device drivers at the edge")."""

from __future__ import annotations

import pytest

from contract.catalog import SENSOR_KINDS
from contract.registry import (
    LorawanDriver,
    ModbusRtuDriver,
    ModbusTcpDriver,
    SimulatedDriver,
    load_registry,
    parse_registry,
)
from tests.support.registry import refusal, ward_registry_yaml

# line 10 onwards
_SENSORS = """          - id: tn-flood-01
            kind: flood_depth
            driver:
              type: modbus-tcp
              host: 192.168.10.21
              port: 502
              unit: 3
              poll_s: 60
              registers:
                - metric: water_level_cm
                  table: holding
                  address: 0
                  type: int16
                  scale: 0.1
                  offset: 0
          - id: tn-aq-05
            kind: air_quality
            driver:
              type: lorawan
              dev_eui: "0004A30B001C0530"
              decoder: json-object
              fields: {pm25: pm25, pm10: pm10}
          - id: tn-rain-01
            kind: rain_gauge
            interval_s: 300
            driver:
              type: modbus-rtu
              port: /dev/ttyUSB0
              baudrate: 9600
              parity: E
              unit: 7
              registers:
                - {metric: rain_mm_h, table: input, address: 10, type: float32, word_order: little}
          - id: tn-noise-01
            kind: noise
"""
_GOOD = ward_registry_yaml("tn-gw-01", _SENSORS)


def test_the_contract_example_parses_with_defaults() -> None:
    reg = parse_registry(_GOOD)
    flood = reg.sensors["tn-flood-01"].spec
    assert isinstance(flood.driver, ModbusTcpDriver)
    assert flood.driver.host == "192.168.10.21" and flood.driver.unit == 3
    r = flood.driver.registers[0]
    assert (r.table, r.address, r.type, r.scale, r.word_order) == ("holding", 0, "int16", 0.1, "big")
    # metrics omitted: the kind's metrics of the catalog
    assert flood.metrics == SENSOR_KINDS["flood_depth"].metrics
    aq = reg.sensors["tn-aq-05"].spec
    assert isinstance(aq.driver, LorawanDriver)
    assert aq.driver.dev_eui == "0004a30b001c0530"
    assert aq.driver.fields == {"pm25": "pm25", "pm10": "pm10"}
    rain = reg.sensors["tn-rain-01"].spec
    assert isinstance(rain.driver, ModbusRtuDriver)
    assert (rain.driver.parity, rain.driver.baudrate, rain.driver.stopbits) == ("E", 9600, 1)
    assert rain.poll_s == 300  # poll_s defaults to interval_s
    assert flood.poll_s == 60
    assert isinstance(reg.sensors["tn-noise-01"].spec.driver, SimulatedDriver)


def test_the_bundled_registry_is_simulated() -> None:
    reg = load_registry()
    assert all(isinstance(ref.spec.driver, SimulatedDriver) for ref in reg.sensors.values())


@pytest.mark.parametrize(
    ("edit", "line", "words"),
    [
        (("type: modbus-tcp", "type: modbus-udp"), 13, "tag"),
        (("port: 502", "port: 70000"), 15, "less than or equal to 65535"),
        (("unit: 3", "unit: 300"), 16, "less than or equal to 247"),
        (("address: 0", "address: -1"), 21, "greater than or equal to 0"),
        (("type: int16", "type: int64"), 22, "int16"),
        (("table: holding", "table: coil"), 20, "holding"),
        (("metric: water_level_cm", "metric: pm25"), 19, "not one of sensor"),
        (("              host: 192.168.10.21\n", ""), 12, "host"),
        (("poll_s: 60", "poll_s: 60\n              colour: red"), 18, "Extra inputs"),
        (('dev_eui: "0004A30B001C0530"', 'dev_eui: "0004A30B001C05"'), 29, "pattern"),
        (("decoder: json-object", "decoder: cayenne"), 30, "json-object"),
        (("fields: {pm25: pm25, pm10: pm10}", "fields: {pm25: pm25, pm10: noise_laeq}"), 31,
         "not one of sensor"),
        (("parity: E", "parity: X"), 39, "'N'"),
        (("word_order: little}", "word_order: middle}"), 42, "big"),
        (("address: 10, type: float32", "address: 65535, type: float32"), 42, "runs past register"),
    ],
)
def test_a_wrong_driver_block_is_refused_with_its_line(edit: tuple[str, str], line: int, words: str) -> None:
    text = _GOOD.replace(*edit)
    assert text != _GOOD
    error = refusal(text)
    assert error.line == line, str(error)
    assert words in str(error), str(error)
    assert str(error).startswith(f"r.yaml:{line}:")


_OFFSET = "                  offset: 0\n"  # the last line of tn-flood-01's register
_SECOND_LORAWAN_OF_ONE_EUI = """          - id: tn-aq-06
            kind: air_quality
            driver: {type: lorawan, dev_eui: 0004a30b001c0530, fields: {pm25: pm25}}
"""
_SECOND_SETTING_OF_ONE_PORT = """          - id: tn-rain-02
            kind: rain_gauge
            driver:
              type: modbus-rtu
              port: /dev/ttyUSB0
              baudrate: 19200
              registers: [{metric: rain_mm_h, address: 0}]
"""


@pytest.mark.parametrize(
    ("text", "words", "line"),
    [
        (_GOOD.replace(_OFFSET, _OFFSET + "                - {metric: water_level_cm, address: 4}\n"),
         "read twice", 25),
        (_GOOD + _SECOND_LORAWAN_OF_ONE_EUI, "first on line 29", 47),
        (_GOOD + _SECOND_SETTING_OF_ONE_PORT, "other settings", 49),
    ],
    ids=["a_metric_read_twice", "one_dev_eui_for_two_sensors", "one_serial_port_with_two_settings"],
)
def test_a_conflict_is_refused_with_its_line(text: str, words: str, line: int) -> None:
    error = refusal(text)
    assert words in str(error), str(error)
    assert error.line == line, str(error)


def test_simulate_overrides_a_lorawan_sensor_that_reports_its_radio_link() -> None:
    from datetime import UTC, datetime, timedelta

    from edge.drivers.simulated import open_simulation

    text = _GOOD.replace("            kind: air_quality\n",
                         "            kind: air_quality\n"
                         "            metrics: [pm25, pm10, battery_pct, lora_rssi_dbm, lora_snr_db]\n")
    reg = parse_registry(text)
    t0 = datetime(2026, 12, 7, tzinfo=UTC)
    sim = open_simulation(reg, "tn-gw-01", start=t0)
    got = sim.driver.poll(t0 + timedelta(minutes=5))
    assert {r.metric for r in got if r.sensor == "tn-aq-05"} == {"pm25", "pm10"}
