"""``smartward edge check --gateway GW``: read every device of a gateway once and print a
table, the first thing a technician runs after wiring a device.

Modbus devices are read at once; LoRaWAN devices speak when they want, so the uplinks of the
next ``--wait`` seconds are shown. The exit status is 0 when every value was read.
"""

from __future__ import annotations

import sys
from typing import TextIO

from contract.catalog import METRICS
from contract.registry import Registry
from edge.clock import SystemClock
from edge.drivers.devices import check_rows, open_devices
from edge.drivers.modbus import CheckRow
from edge.settings import EdgeSettings

HEADER = ("Cảm biến / Sensor", "Chỉ số / Metric", "Giá trị / Value", "Đơn vị / Unit", "Kết quả / Result")


def _status(row: CheckRow) -> str:
    if row.error is not None:
        return f"LỖI / ERROR: {row.error}"
    if row.quality != "good":
        return "OK (ngoài ngưỡng vật lý / outside physical bounds: quality bad)"
    return "OK"


def format_table(rows: list[CheckRow]) -> str:
    lines = [HEADER]
    for r in rows:
        value = "-" if r.value is None else f"{r.value:.6g}"
        lines.append((r.sensor, r.metric, value, METRICS[r.metric].unit, _status(r)))
    widths = [max(len(line[i]) for line in lines) for i in range(4)]
    out = []
    for i, line in enumerate(lines):
        out.append("  ".join(c.ljust(w) for c, w in zip(line[:4], widths, strict=True)) + "  " + line[4])
        if i == 0:
            out.append("  ".join("-" * w for w in widths) + "  " + "-" * len(HEADER[4]))
    return "\n".join(out)


def run_check(settings: EdgeSettings, registry: Registry, gateway: str, *, wait_s: float,
              out: TextIO | None = None) -> int:
    sensors = registry.sensors_of(gateway)
    devices = open_devices(settings, gateway, sensors, SystemClock())
    rows = check_rows(devices, sensors, wait_s=wait_s)
    stream = out or sys.stdout
    print(format_table(rows), file=stream)
    failed = sum(r.error is not None for r in rows)
    if devices.skipped:
        print(f"\nKhông đọc (mô phỏng) / not read (simulated): {', '.join(devices.skipped)}", file=stream)
    print(f"\n{len(rows) - failed}/{len(rows)} giá trị đọc được / values read", file=stream)
    return 0 if failed == 0 else 1
