"""LoRaWAN sensors through a network server's MQTT integration, on a real Mosquitto, with
events shaped as ChirpStack v4 publishes them (tests/fixtures/chirpstack/, source named there).
"""

from __future__ import annotations

import copy
import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from contract.brokers import BrokerUrl
from contract.models import Reading
from contract.registry import Registry
from edge.drivers.lorawan import Devices, LorawanDriver, UplinkError, parse_time
from tests.servers.mosquitto import MosquittoFactory
from tests.support.edge import network_server
from tests.support.registry import ward_registry
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

FIXTURES = Path(__file__).parent.parent / "fixtures" / "chirpstack"
UP: dict[str, Any] = json.loads((FIXTURES / "up.json").read_text())
STATUS: dict[str, Any] = json.loads((FIXTURES / "status.json").read_text())
APP = UP["deviceInfo"]["applicationId"]
EUI = "0004a30b001c0530"
GW = "tn-gw-01"
UPLINK_TIME = datetime(2026, 12, 7, 2, 15, 4, 512331, tzinfo=UTC)

REGISTRY: Registry = ward_registry(GW, f"""          - id: tn-aq-05
            kind: air_quality
            metrics: [pm25, pm10, air_temp_c, humidity_pct, battery_pct, lora_rssi_dbm, lora_snr_db]
            driver:
              type: lorawan
              dev_eui: "{EUI.upper()}"
              decoder: json-object
              fields: {{pm25: pm25, pm10: pm10, temperature: air_temp_c, humidity: humidity_pct}}
          - id: tn-aq-06
            kind: air_quality
            metrics: [pm25]
            driver: {{type: lorawan, dev_eui: "0004a30b001c0531", fields: {{pm25: pm25}}}}
""")
SENSORS = REGISTRY.sensors_of(GW)


def test_an_uplink_becomes_readings_at_the_uplink_time() -> None:
    devices = Devices(SENSORS)
    got = {(r.metric, r.value, r.quality) for r in devices.uplink(EUI, UP)}
    assert got == {("pm25", 48.2, "good"), ("pm10", 71.0, "good"), ("air_temp_c", 27.5, "good"),
                   ("humidity_pct", 81.0, "good"), ("lora_rssi_dbm", -97.0, "good"),
                   ("lora_snr_db", 4.25, "good")}
    assert {r.ts for r in devices.uplink(EUI, {**UP, "fCnt": 1188})} == {UPLINK_TIME}
    assert {r.sensor for r in devices.uplink(EUI, {**UP, "fCnt": 1189})} == {"tn-aq-05"}


def test_a_repeated_uplink_is_dropped_by_its_frame_counter() -> None:
    devices = Devices(SENSORS)
    assert devices.uplink(EUI, UP)
    again = copy.deepcopy(UP)
    again["deduplicationId"] = "another-publication"
    assert devices.uplink(EUI, again) == []
    assert devices.duplicates == 1
    # a device that rejoined counts again from its first frames, hours later: new frames
    later = {**UP, "time": "2026-12-07T09:00:00Z"}
    assert devices.uplink(EUI, later)
    # fCnt 0 is left out of the JSON by the proto3 mapping
    first = {k: v for k, v in UP.items() if k != "fCnt"}
    assert devices.uplink(EUI, first)


def test_battery_comes_from_the_status_event() -> None:
    devices = Devices(SENSORS)
    [r] = devices.status(EUI, STATUS)
    assert (r.sensor, r.metric, r.value) == ("tn-aq-05", "battery_pct", 86.61)
    assert r.ts == parse_time(STATUS["time"])
    assert devices.status(EUI, {**STATUS, "externalPowerSource": True}) == []


@pytest.mark.parametrize(
    "broken",
    [
        {**UP, "time": "yesterday"},
        {**UP, "deviceInfo": {**UP["deviceInfo"], "devEui": "0004a30b001c9999"}},
        {**UP, "fCnt": -1},
        {**UP, "object": [1, 2]},
        {k: v for k, v in UP.items() if k != "time"},
    ],
)
def test_a_broken_event_is_refused(broken: dict[str, Any]) -> None:
    with pytest.raises(UplinkError):
        Devices(SENSORS).uplink(EUI, broken)


def test_out_of_bounds_is_bad_and_a_non_number_is_an_error_for_that_field_only() -> None:
    event = {**UP, "object": {"pm25": 5000, "pm10": "n/a", "humidity": 50}}
    with pytest.raises(UplinkError) as info:
        Devices(SENSORS).uplink(EUI, event)
    got = {(r.metric, r.quality) for r in info.value.readings}  # type: ignore[attr-defined]
    assert ("pm25", "bad") in got and ("humidity_pct", "good") in got
    assert not any(m == "pm10" for m, _ in got)


def test_the_driver_reads_a_network_servers_mqtt_integration(mosquitto: MosquittoFactory) -> None:
    broker = mosquitto()
    driver = LorawanDriver(GW, SENSORS, BrokerUrl.parse(broker.url), application_id=APP)
    with network_server(broker.url) as ns:
        driver.start()
        try:
            assert driver.connected.wait(10)
            topic = f"application/{APP}/device/{EUI}/event"
            other = f"application/other/device/{EUI}/event"
            infos = [ns.publish(f"{topic}/up", json.dumps(UP), qos=1),
                     ns.publish(f"{topic}/up", json.dumps(UP), qos=1),  # published again: one frame
                     ns.publish(f"{topic}/status", json.dumps(STATUS), qos=1),
                     ns.publish(f"{topic}/up", b"{not json", qos=1),
                     # another application's device of the same EUI is not ours
                     ns.publish(f"{other}/up", json.dumps({**UP, "fCnt": 5}), qos=1),
                     ns.publish(f"{topic}/up", json.dumps({**UP, "fCnt": 1188, "object": {"pm25": 50.0}}),
                                qos=1)]
            for info in infos:
                info.wait_for_publish(10)
            got: list[Reading] = []
            errors = [0]

            def arrived() -> bool:
                got.extend(driver.poll(datetime.now(UTC)))
                errors[0] += driver.take_errors()
                return len(got) >= 10 and errors[0] >= 1
            wait_until(arrived, 10, "uplinks through the broker")
            assert sorted(r.value for r in got if r.metric == "pm25") == [48.2, 50.0]
            assert [r.value for r in got if r.metric == "battery_pct"] == [86.61]
            assert all(r.ts == UPLINK_TIME for r in got if r.metric != "battery_pct")
            assert len(got) == 6 + 1 + 3  # first uplink, status, second uplink (pm25 + RSSI + SNR)
            assert errors[0] == 1
        finally:
            driver.close()


def test_check_shows_the_uplinks_that_arrive_while_it_waits(tmp_path: Path,
                                                             mosquitto: MosquittoFactory) -> None:
    from edge.clock import SystemClock
    from edge.drivers.devices import check_rows, open_devices
    from edge.settings import EdgeSettings

    broker = mosquitto()
    settings = EdgeSettings(edge_lorawan_mqtt_url=broker.url, edge_lorawan_application_id=APP,
                            edge_outbox=str(tmp_path / "outbox"))
    drivers = open_devices(settings, GW, SENSORS, SystemClock())
    assert drivers.lorawan is not None
    with network_server(broker.url) as ns:
        def publish_once_subscribed() -> None:
            assert drivers.lorawan is not None
            if drivers.lorawan.connected.wait(10):
                ns.publish(f"application/{APP}/device/{EUI}/event/up", json.dumps(UP), qos=1)

        t = threading.Thread(target=publish_once_subscribed)
        t.start()
        try:
            rows = {(r.sensor, r.metric): r for r in check_rows(drivers, SENSORS, wait_s=2)}
        finally:
            t.join(10)
    assert rows["tn-aq-05", "pm25"].value == 48.2 and rows["tn-aq-05", "pm25"].error is None
    assert rows["tn-aq-06", "pm25"].value is None and "no uplink" in str(rows["tn-aq-06", "pm25"].error)
