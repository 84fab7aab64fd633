"""Registries written for a test (no tests here): one gateway in the Thống Nhất ward with the
sensors the test wires, as YAML text or parsed, and a Modbus TCP sensor block; and
``refusal``, the error a registry text is refused with."""

from __future__ import annotations

import pytest

from contract.errors import RegistryError
from contract.registry import Registry, parse_registry

# Nine lines: a sensor block given to ward_registry_yaml starts on line 10 (the unit tests
# name the lines of the errors they expect).
_WARD = """version: 1
sites:
  - id: thong-nhat
    name: {{vi: "Phường Thống Nhất", en: "Thong Nhat ward"}}
    kind: ward
    location: {{lat: 20.440, lon: 106.168}}
    gateways:
      - id: {gateway}
        sensors:
"""


def ward_registry_yaml(gateway: str, sensors: str) -> str:
    """A registry of one gateway in the Thống Nhất ward; `sensors` is its YAML list of sensors,
    each item indented by ten spaces (``          - id: ...``)."""
    return _WARD.format(gateway=gateway) + sensors


def ward_registry(gateway: str, sensors: str) -> Registry:
    return parse_registry(ward_registry_yaml(gateway, sensors))


def modbus_tcp_sensor(sensor: str, port: int, *, unit: int | None = None, address: int = 0,
                      type_: str | None = "int16", scale: float | None = 0.1,
                      interval_s: int | None = None, timeout_s: float | None = None) -> str:
    """One flood-depth sensor read from one Modbus TCP register on 127.0.0.1 (None: the key is
    left out, the registry's default applies)."""
    register = f"metric: water_level_cm, address: {address}"
    register += "" if type_ is None else f", type: {type_}"
    register += "" if scale is None else f", scale: {scale}"
    lines = [f"          - id: {sensor}", "            kind: flood_depth"]
    if interval_s is not None:
        lines.append(f"            interval_s: {interval_s}")
    lines += ["            driver:", "              type: modbus-tcp", "              host: 127.0.0.1",
              f"              port: {port}"]
    if unit is not None:
        lines.append(f"              unit: {unit}")
    if timeout_s is not None:
        lines.append(f"              timeout_s: {timeout_s}")
    lines.append(f"              registers: [{{{register}}}]")
    return "\n".join(lines) + "\n"


def refusal(text: str) -> RegistryError:
    """The error `text` is refused with, read from ``r.yaml`` (a test fails if it parses)."""
    with pytest.raises(RegistryError) as info:
        parse_registry(text, source="r.yaml")
    return info.value
