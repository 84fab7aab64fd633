"""LoRaWAN devices, through a network server's MQTT integration (ChirpStack v4).

The network server decodes each uplink (its device profile's codec) and publishes a JSON
event on ``application/{application_id}/device/{dev_eui}/event/up``; the driver subscribes
to its gateway's devices, maps the decoded ``object``'s keys to metrics (``fields`` of the
registry), stamps each reading with the uplink's own ``time``, and drops an uplink it has
already seen (same device and frame counter ``fCnt``, as the network server may publish an
uplink again). The radio link (best RSSI and SNR over the receiving gateways) and the
battery (``event/status``, ``batteryLevel``) are metrics too, for sensors that list them.

Messages arrive on paho's thread; ``poll`` collects them on the agent's thread. The session
is persistent (QoS 1), so uplinks published while the gateway was away are delivered when
it reconnects.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from contract.brokers import BrokerUrl
from contract.models import Reading
from contract.registry import LorawanDriver as LorawanSpec
from contract.registry import SensorSpec
from edge.drivers.inbox import DriverInbox
from edge.drivers.modbus_map import quality_of

logger = logging.getLogger(__name__)

RSSI, SNR, BATTERY = "lora_rssi_dbm", "lora_snr_db", "battery_pct"
# Frame counters remembered per device: an uplink repeated later than this many newer ones
# is taken as new (a device that rejoined and counts from 0 again).
_FCNT_MEMORY = 64
# The same fCnt this long after the first is a new frame (counter reset), not a repeat.
_REPEAT_WINDOW = timedelta(hours=1)
_FRACTION = re.compile(r"(\.\d{6})\d+")


class UplinkError(ValueError):
    """An event that cannot be read (counted as a driver error)."""


def parse_time(text: Any) -> datetime:
    """RFC 3339 as ChirpStack writes it (nanoseconds, ``Z`` or an offset) to an aware datetime."""
    if not isinstance(text, str):
        raise UplinkError("no time")
    try:
        t = datetime.fromisoformat(_FRACTION.sub(r"\1", text.replace("Z", "+00:00")))
    except ValueError as exc:
        raise UplinkError(f"bad time {text!r}") from exc
    if t.tzinfo is None:
        raise UplinkError(f"time without offset {text!r}")
    return t.astimezone(UTC)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


class Devices:
    """The uplink decoding of one gateway's LoRaWAN sensors, without I/O (tested directly)."""

    def __init__(self, sensors: Sequence[SensorSpec]) -> None:
        self.by_eui: dict[str, tuple[SensorSpec, LorawanSpec]] = {
            s.driver.dev_eui: (s, s.driver) for s in sensors if isinstance(s.driver, LorawanSpec)}
        self._seen: dict[str, OrderedDict[int, datetime]] = {}
        self.duplicates = 0

    def uplink(self, dev_eui: str, event: Mapping[str, Any]) -> list[Reading]:
        """The readings of an ``up`` event; [] for a repeat. UplinkError for a broken event."""
        sensor, spec = self._device(dev_eui, event)
        fcnt = event.get("fCnt", 0)  # proto3 JSON leaves out a zero
        if not isinstance(fcnt, int) or isinstance(fcnt, bool) or fcnt < 0:
            raise UplinkError(f"bad fCnt {fcnt!r}")
        ts = parse_time(event.get("time"))
        if self._repeat(dev_eui, fcnt, ts):
            self.duplicates += 1
            return []
        obj = event.get("object")
        if obj is None:
            obj = {}
        if not isinstance(obj, Mapping):
            raise UplinkError("decoded object is not a JSON object")
        out: list[Reading] = []
        bad: list[str] = []
        for key, metric in spec.fields.items():
            if key not in obj:
                continue  # a frame may carry part of the fields
            value = _number(obj[key])
            if value is None:
                bad.append(key)
                continue
            out.append(Reading(sensor.id, metric, ts, value, quality_of(metric, value)))
        rx = event.get("rxInfo") or []
        if isinstance(rx, list):
            rssi = [v for g in rx if isinstance(g, Mapping) and (v := _number(g.get("rssi"))) is not None]
            snr = [v for g in rx if isinstance(g, Mapping) and (v := _number(g.get("snr"))) is not None]
            for metric, values in ((RSSI, rssi), (SNR, snr)):
                if values and metric in sensor.metrics:
                    out.append(Reading(sensor.id, metric, ts, max(values), quality_of(metric, max(values))))
        if bad:
            raise PartialUplink(out, f"{dev_eui}: field(s) {', '.join(bad)} are not numbers")
        return out

    def status(self, dev_eui: str, event: Mapping[str, Any]) -> list[Reading]:
        """The battery of a ``status`` event, for a sensor that lists ``battery_pct``."""
        sensor, _ = self._device(dev_eui, event)
        if BATTERY not in sensor.metrics or event.get("batteryLevelUnavailable") or \
                event.get("externalPowerSource"):
            return []
        level = _number(event.get("batteryLevel"))
        if level is None:
            return []
        ts = parse_time(event.get("time"))
        return [Reading(sensor.id, BATTERY, ts, level, quality_of(BATTERY, level))]

    def _device(self, dev_eui: str, event: Mapping[str, Any]) -> tuple[SensorSpec, LorawanSpec]:
        info = event.get("deviceInfo")
        eui = info.get("devEui") if isinstance(info, Mapping) else None
        if not isinstance(eui, str) or eui.lower() != dev_eui:
            raise UplinkError(f"deviceInfo.devEui {eui!r} is not the topic's {dev_eui}")
        if dev_eui not in self.by_eui:
            raise UplinkError(f"device {dev_eui} is not in this gateway's registry")
        return self.by_eui[dev_eui]

    def _repeat(self, dev_eui: str, fcnt: int, ts: datetime) -> bool:
        seen = self._seen.setdefault(dev_eui, OrderedDict())
        first = seen.get(fcnt)
        if first is not None and abs(ts - first) <= _REPEAT_WINDOW:
            return True
        seen[fcnt] = ts
        seen.move_to_end(fcnt)
        while len(seen) > _FCNT_MEMORY:
            seen.popitem(last=False)
        return False


class PartialUplink(UplinkError):
    """Some fields were not numbers: the readings of the others, and an error to count."""

    def __init__(self, readings: list[Reading], message: str) -> None:
        super().__init__(message)
        self.readings = readings


_TOPIC = re.compile(r"^application/[^/]+/device/([0-9a-fA-F]{16})/event/(up|status)$")


class LorawanDriver:
    """Subscribes to the network server's events for the gateway's LoRaWAN sensors."""

    def __init__(self, gateway: str, sensors: Sequence[SensorSpec], url: BrokerUrl, *,
                 application_id: str = "+", ca_file: str | None = None) -> None:
        from mqttlink.client import SessionOptions, new_client

        self.devices = Devices(sensors)
        self._inbox = DriverInbox()
        self.connected = threading.Event()  # connected and subscribed
        self._topics = [f"application/{application_id}/device/{eui}/event/{kind}"
                        for eui in sorted(self.devices.by_eui) for kind in ("up", "status")]
        # MQTT 3.1.1 whatever the URL says (the network server's broker), with a persistent
        # session (clean_session=False: its expiry is the broker's).
        self._url = dataclasses.replace(url, protocol="3.1.1")
        self._options = SessionOptions(client_id=f"smartward-edge-{gateway}-lorawan", keepalive_s=60,
                                       session_expiry_s=0)
        self._client = new_client(self._url, self._options, ca_file=ca_file)
        self._client.reconnect_delay_set(min_delay=1, max_delay=60)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe

    def start(self) -> None:
        from mqttlink.client import connect

        connect(self._client, self._url, self._options, background=True)
        self._client.loop_start()

    def close(self, timeout_s: float = 5.0) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def poll(self, now: datetime) -> list[Reading]:
        return self._inbox.poll()

    def take_errors(self) -> int:
        return self._inbox.take_errors()

    # -- paho's thread (never raises) ---------------------------------------------------------

    def _on_connect(self, client: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            logger.warning("LoRaWAN network server refused the connection: %s", rc)
            return
        if self._topics:
            client.subscribe([(t, 1) for t in self._topics])
        else:
            self.connected.set()

    def _on_subscribe(self, _c: Any, _u: Any, _mid: Any, codes: Any, _p: Any) -> None:
        if any(getattr(c, "is_failure", False) for c in codes):
            logger.warning("LoRaWAN network server refused a subscription: %s", codes)
        # Set once the SUBACK is in: an uplink published from now on reaches us.
        self.connected.set()
        logger.info("LoRaWAN: subscribed to %d device(s) on %s", len(self.devices.by_eui), self._url)

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        readings: list[Reading] = []
        error = False
        try:
            m = _TOPIC.match(msg.topic)
            if m is None:
                raise UplinkError(f"unexpected topic {msg.topic}")
            event = json.loads(msg.payload)
            if not isinstance(event, dict):
                raise UplinkError("event is not a JSON object")
            eui = m.group(1).lower()
            if m.group(2) == "up":
                readings = self.devices.uplink(eui, event)
            else:
                readings = self.devices.status(eui, event)
        except PartialUplink as exc:
            readings, error = exc.readings, True
            logger.warning("LoRaWAN event on %s: %s", msg.topic, exc)
        except (UplinkError, ValueError) as exc:
            error = True
            logger.warning("LoRaWAN event on %s dropped: %s", msg.topic, exc)
        self._inbox.put(readings, errors=int(error))
