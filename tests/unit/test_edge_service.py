"""The gateway as a systemd service: the unit file verifies, and says what the agent needs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.servers._proc import missing_server

UNIT = Path(__file__).parents[2] / "deploy" / "systemd" / "smartward-edge@.service"


def settings_of(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def test_the_unit_runs_one_agent_per_gateway_with_watchdog_and_restart() -> None:
    s = settings_of(UNIT.read_text())
    assert s["Type"] == "notify" and s["NotifyAccess"] == "main"
    assert s["Restart"] == "on-failure"
    assert int(s["WatchdogSec"]) >= 4 * 30  # fed every status interval (30 s)
    assert s["EnvironmentFile"] == "/etc/smartward/edge-%i.env"
    assert s["ExecStart"].endswith("smartward edge run --gateway %i")
    assert "%i" in s["Environment"]  # one outbox per gateway


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        # Not every container has systemd; where it exists, a rejected unit fails the run.
        missing_server("systemd-analyze", "not installed (Debian package systemd)")
    # verify checks that ExecStart exists: point it at this machine's smartward command.
    exe = shutil.which("smartward") or sys.executable
    instance = tmp_path / "smartward-edge@tn-gw-01.service"
    instance.write_text(UNIT.read_text().replace("/usr/local/bin/smartward", exe))
    proc = subprocess.run([analyze, "verify", str(instance)], capture_output=True, text=True, timeout=60,
                          check=False)
    ours = [line for line in (proc.stdout + proc.stderr).splitlines() if instance.name in line]
    assert proc.returncode == 0 and not ours, proc.stdout + proc.stderr
