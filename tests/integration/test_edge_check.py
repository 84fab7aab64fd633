"""``smartward edge check``: the command a technician runs after wiring a device."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.ports import free_port
from tests.support.registry import modbus_tcp_sensor, ward_registry_yaml

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

ROOT = Path(__file__).parents[2]


def test_check_reads_every_device_once_and_prints_a_table(tmp_path: Path, modbus_devices: Any) -> None:
    dev = modbus_devices(units=(3,))
    dev.set_holding(3, 0, [1234, 4000])
    dead = free_port()
    registry = tmp_path / "registry.yaml"
    registry.write_text(ward_registry_yaml("tn-gw-01", (
        modbus_tcp_sensor("tn-flood-01", dev.port, unit=3)
        + modbus_tcp_sensor("tn-flood-02", dev.port, unit=3, address=1)
        + modbus_tcp_sensor("tn-flood-03", dead, timeout_s=1, type_=None, scale=None)
        + "          - id: tn-noise-01\n            kind: noise\n")))
    env = {**os.environ, "SMARTWARD_REGISTRY": str(registry), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "smartward.cli", "edge", "check", "--gateway", "tn-gw-01"],
                          capture_output=True, text=True, env=env, timeout=45, check=False)
    out = proc.stdout
    assert proc.returncode == 1, proc.stderr  # one device did not answer
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("tn-")}
    assert "Cảm biến / Sensor" in out and "Kết quả / Result" in out
    assert "123.4" in lines["tn-flood-01"] and "cm" in lines["tn-flood-01"]
    assert lines["tn-flood-01"].rstrip().endswith("OK")
    assert "400" in lines["tn-flood-02"] and "quality bad" in lines["tn-flood-02"]  # over 300 cm
    assert "LỖI / ERROR" in lines["tn-flood-03"]
    assert "tn-noise-01" in out.split("not read (simulated):")[1]
    assert "2/3" in out
