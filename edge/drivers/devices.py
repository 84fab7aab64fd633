"""The real devices of one gateway: every sensor read through the driver its registry entry
names (docs/contract.md "Device drivers at the edge"), behind one :class:`Driver`.

Sensors whose driver is ``simulated`` are not read here: a real gateway never mixes made-up
values with measured ones (``smartward edge run --simulate`` simulates the whole gateway).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from contract.models import Reading
from contract.registry import LorawanDriver as LorawanSpec
from contract.registry import ModbusRtuDriver, ModbusTcpDriver, SensorSpec, SimulatedDriver
from edge.clock import Clock
from edge.drivers.lorawan import LorawanDriver
from edge.drivers.modbus import CheckRow, ModbusDriver
from edge.errors import ConfigError
from edge.publisher import parse_broker_urls
from edge.settings import EdgeSettings

logger = logging.getLogger(__name__)


def real_sensors(sensors: Sequence[SensorSpec]) -> list[SensorSpec]:
    return [s for s in sensors if not isinstance(s.driver, SimulatedDriver)]


@dataclass(slots=True)
class DeviceDrivers:
    """Modbus and LoRaWAN sensors of one gateway; ``start`` before the agent runs, ``close`` after."""

    modbus: ModbusDriver | None
    lorawan: LorawanDriver | None
    skipped: tuple[str, ...] = ()

    def start(self) -> None:
        if self.modbus is not None:
            self.modbus.start()
        if self.lorawan is not None:
            self.lorawan.start()

    def close(self) -> None:
        if self.modbus is not None:
            self.modbus.close()
        if self.lorawan is not None:
            self.lorawan.close()

    def __enter__(self) -> DeviceDrivers:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def poll(self, now: datetime) -> list[Reading]:
        out: list[Reading] = []
        if self.modbus is not None:
            out.extend(self.modbus.poll(now))
        if self.lorawan is not None:
            out.extend(self.lorawan.poll(now))
        out.sort(key=lambda r: r.ts)
        return out

    def take_errors(self) -> int:
        return (self.modbus.take_errors() if self.modbus else 0) + \
            (self.lorawan.take_errors() if self.lorawan else 0)


def open_devices(settings: EdgeSettings, gateway: str, sensors: Sequence[SensorSpec], clock: Clock, *,
                 time_scale: float = 1.0) -> DeviceDrivers:
    """The drivers of ``sensors``; ConfigError when none is real or LoRaWAN has no server set."""
    real = real_sensors(sensors)
    skipped = tuple(s.id for s in sensors if s not in real)
    if not real:
        raise ConfigError(f"gateway {gateway} has no sensor with a device driver in the registry; "
                          "use --simulate to simulate it")
    for sid in skipped:
        logger.warning("sensor %s has no device driver (simulated): not read; use --simulate to "
                       "simulate the whole gateway", sid)
    modbus = [s for s in real if isinstance(s.driver, ModbusTcpDriver | ModbusRtuDriver)]
    lora = [s for s in real if isinstance(s.driver, LorawanSpec)]
    lorawan = None
    if lora:
        if settings.edge_lorawan_mqtt_url is None:
            raise ConfigError("LoRaWAN sensors need the network server's MQTT URL: "
                              "SMARTWARD_EDGE_LORAWAN_MQTT_URL=mqtt[s]://user:pass@host:port")
        url = parse_broker_urls(settings.edge_lorawan_mqtt_url.get_secret_value())[0]
        lorawan = LorawanDriver(gateway, lora, url, application_id=settings.edge_lorawan_application_id,
                                ca_file=str(settings.edge_lorawan_ca_file) if settings.edge_lorawan_ca_file
                                else None)
    return DeviceDrivers(
        modbus=ModbusDriver(modbus, clock, time_scale=time_scale) if modbus else None,
        lorawan=lorawan, skipped=skipped)


def check_rows(drivers: DeviceDrivers, sensors: Sequence[SensorSpec], *, wait_s: float) -> list[CheckRow]:
    """Every real sensor's metrics read once: Modbus now, LoRaWAN from the uplinks of ``wait_s``."""
    rows: list[CheckRow] = []
    if drivers.modbus is not None:
        rows.extend(drivers.modbus.check())
    lw = drivers.lorawan
    if lw is not None:
        lw.start()
        try:
            if not lw.connected.wait(10.0):
                error = "không kết nối được máy chủ mạng / cannot reach the network server"
                seen: dict[tuple[str, str], Reading] = {}
            else:
                error = f"chưa có bản tin trong {wait_s:g} s / no uplink in {wait_s:g} s"
                threading.Event().wait(wait_s)
                seen = {(r.sensor, r.metric): r for r in lw.poll(datetime.now().astimezone())}
        finally:
            lw.close()
        for s in sensors:
            if isinstance(s.driver, LorawanSpec):
                for metric in s.driver.fields.values():
                    r = seen.get((s.id, metric))
                    rows.append(CheckRow(s.id, metric, r.value, None, r.quality) if r else
                                CheckRow(s.id, metric, None, error))
    return rows
