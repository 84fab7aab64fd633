"""The server's systemd units (deploy/systemd): each verifies and runs what the guide says."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers._proc import missing_server

SYSTEMD = Path(__file__).parents[2] / "deploy" / "systemd"
UNITS = ("smartward-broker.service", "smartward-ingest@.service", "smartward-ops.service",
         "smartward-tt10.service")


def settings_of(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def unit(name: str) -> dict[str, list[str]]:
    return settings_of((SYSTEMD / name).read_text())


def test_the_broker_runs_the_projects_configuration_with_room_for_ten_thousand_gateways() -> None:
    s = unit("smartward-broker.service")
    assert s["ExecStart"] == ["/usr/sbin/mosquitto -c /etc/mosquitto/smartward.conf"]
    assert s["Type"] == ["notify"] and s["Conflicts"] == ["mosquitto.service"]
    assert int(s["LimitNOFILE"][0]) >= 20_000
    conf = (SYSTEMD.parent / "mosquitto" / "smartward.conf").read_text()
    assert "persistence_location /var/lib/mosquitto/" in conf and s["StateDirectory"] == ["mosquitto"]


def test_ingest_workers_share_one_subscription_each_with_its_own_account() -> None:
    s = unit("smartward-ingest@.service")
    (cmd,) = s["ExecStart"]
    assert cmd.endswith("smartward ingest run --share-group ingest --client-id ingest-%i --no-migrate")
    assert s["EnvironmentFile"] == ["/etc/smartward/smartward.env", "/etc/smartward/ingest-%i.env"]
    env = settings_of((SYSTEMD / "ingest.env.example").read_text())
    assert set(env) == {"SMARTWARD_MQTT_URL", "SMARTWARD_METRICS_PORT"}


def test_ops_listens_on_loopback_behind_the_proxy_and_tt10_keeps_its_files() -> None:
    ops = unit("smartward-ops.service")
    assert ops["ExecStart"][0].endswith("smartward ops serve --host 127.0.0.1 --port 8000 --no-migrate")
    proxy = (SYSTEMD.parent / "nginx" / "smartward.conf").read_text()
    assert "proxy_pass http://127.0.0.1:8000" in proxy
    tt10 = unit("smartward-tt10.service")
    assert tt10["ExecStart"][0].endswith("smartward feeds tt10 run")
    assert tt10["Environment"] == ["SMARTWARD_TT10_DIR=/var/lib/smartward/tt10"]
    assert tt10["StateDirectory"] == ["smartward/tt10"]


@pytest.mark.parametrize("name", UNITS)
def test_every_unit_runs_hardened_and_restarts(name: str) -> None:
    s = unit(name)
    assert s["Restart"] == ["on-failure"]
    assert s["NoNewPrivileges"] == ["yes"] and s["ProtectSystem"] == ["strict"]
    assert s["User"][0] in ("smartward", "mosquitto")
    for env_file in s.get("EnvironmentFile", []):
        example = SYSTEMD / Path(env_file.replace("-%i", "")).name.replace(".env", ".env.example")
        assert example.exists(), f"{name}: no example for {env_file}"


@pytest.mark.parametrize("name", UNITS)
def test_systemd_analyze_verifies_the_unit(name: str, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        missing_server("systemd-analyze", "not installed (Debian package systemd)")
    # verify checks that ExecStart exists: point it at this machine's smartward command.
    exe = shutil.which("smartward") or sys.executable
    instance = tmp_path / name.replace("@.", "@1.")
    instance.write_text((SYSTEMD / name).read_text().replace("/usr/local/bin/smartward", exe))
    proc = subprocess.run([analyze, "verify", str(instance)], capture_output=True, text=True, timeout=60,
                          check=False)
    ours = [line for line in (proc.stdout + proc.stderr).splitlines() if instance.name in line]
    assert proc.returncode == 0 and not ours, proc.stdout + proc.stderr
