"""Site registry: sites, gateways and sensors, loaded from YAML that city staff edit.

Errors name the line: the YAML is composed into nodes (which carry their marks), every
path is mapped to a line, and pydantic's error locations are translated back through
that map. Duplicate YAML keys, unknown keys, duplicate ids, unknown kinds and metrics
are all refused.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from contract.catalog import METRICS, SENSOR_KINDS
from contract.errors import RegistryError
from contract.models import SLUG_PATTERN
from contract.yamlines import YamlLinesError, YamlPath, clean_loc, compose_with_lines, line_for

SlugStr = Annotated[str, Field(pattern=SLUG_PATTERN)]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Names(_Strict):
    vi: str = Field(min_length=1)
    en: str = Field(min_length=1)


class Location(_Strict):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    # True where docs/domain-facts.md has no verified position (e.g. CCN An Xá, §5.3).
    placeholder: bool = False


# -- device drivers (docs/contract.md "Device drivers at the edge") -------------------------------

RegisterType = Literal["int16", "uint16", "int32", "uint32", "float32"]
REGISTER_WORDS: dict[str, int] = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2}


class ModbusRegister(_Strict):
    metric: str
    table: Literal["holding", "input"] = "holding"
    address: int = Field(ge=0, le=65_535)  # 0-based
    type: RegisterType = "uint16"
    word_order: Literal["big", "little"] = "big"  # of the two words of a 32-bit value
    scale: float = 1.0
    offset: float = 0.0

    @property
    def words(self) -> int:
        return REGISTER_WORDS[self.type]

    @model_validator(mode="after")
    def _fits(self) -> ModbusRegister:
        if self.address + self.words - 1 > 65_535:
            raise ValueError(f"a {self.type} at address {self.address} runs past register 65535")
        return self


class _ModbusDriver(_Strict):
    unit: int = Field(default=1, ge=0, le=247)
    poll_s: int | None = Field(default=None, ge=1, le=86_400)
    timeout_s: float = Field(default=3.0, gt=0, le=60)
    registers: tuple[ModbusRegister, ...] = Field(min_length=1)


class ModbusTcpDriver(_ModbusDriver):
    type: Literal["modbus-tcp"]
    host: str = Field(min_length=1, max_length=253)
    port: int = Field(default=502, ge=1, le=65_535)


class ModbusRtuDriver(_ModbusDriver):
    type: Literal["modbus-rtu"]
    port: str = Field(min_length=1)  # the serial device, e.g. /dev/ttyUSB0
    baudrate: int = Field(default=9600, ge=300, le=921_600)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8


class LorawanDriver(_Strict):
    type: Literal["lorawan"]
    dev_eui: str = Field(pattern=r"^[0-9A-Fa-f]{16}$")
    decoder: Literal["json-object"] = "json-object"
    # key of the network server's decoded ``object`` -> metric
    fields: dict[str, str] = Field(min_length=1)

    @field_validator("dev_eui")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()


class SimulatedDriver(_Strict):
    type: Literal["simulated"] = "simulated"


DriverSpec = Annotated[
    Union[ModbusTcpDriver, ModbusRtuDriver, LorawanDriver, SimulatedDriver],  # noqa: UP007
    Field(discriminator="type"),
]


def driver_metrics(driver: DriverSpec) -> list[tuple[str, YamlPath]]:
    """The metrics a driver block names, each with its path inside the block."""
    if isinstance(driver, ModbusTcpDriver | ModbusRtuDriver):
        return [(r.metric, ("registers", i, "metric")) for i, r in enumerate(driver.registers)]
    if isinstance(driver, LorawanDriver):
        return [(m, ("fields", key)) for key, m in driver.fields.items()]
    return []


class SensorSpec(_Strict):
    id: SlugStr
    kind: str
    metrics: tuple[str, ...] = ()
    driver: DriverSpec = SimulatedDriver()
    interval_s: int = Field(default=60, ge=1, le=86_400)
    location: Location | None = None
    name: Names | None = None
    attrs: dict[str, str | int | float | bool] = Field(default_factory=dict)

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in SENSOR_KINDS:
            raise ValueError(f"unknown sensor kind {value!r} (known: {', '.join(SENSOR_KINDS)})")
        return value

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for m in value:
            if m not in METRICS:
                raise ValueError(f"unknown metric {m!r}")
        if len(set(value)) != len(value):
            raise ValueError("duplicate metric")
        return value

    @model_validator(mode="after")
    def _default_metrics(self) -> SensorSpec:
        if not self.metrics:
            object.__setattr__(self, "metrics", SENSOR_KINDS[self.kind].metrics)
        return self

    @property
    def poll_s(self) -> int:
        """How often a polled driver reads this sensor: the driver's ``poll_s`` or ``interval_s``."""
        d = self.driver
        if isinstance(d, ModbusTcpDriver | ModbusRtuDriver) and d.poll_s is not None:
            return d.poll_s
        return self.interval_s


class GatewaySpec(_Strict):
    id: SlugStr
    location: Location | None = None
    name: Names | None = None
    sensors: tuple[SensorSpec, ...] = ()


class SiteSpec(_Strict):
    id: SlugStr
    name: Names
    kind: Literal["ward", "industrial_cluster"]
    parent: str | None = None
    legacy_name: str | None = None
    location: Location
    gateways: tuple[GatewaySpec, ...] = ()


class RegistrySpec(_Strict):
    version: Literal[1]
    sites: tuple[SiteSpec, ...] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class SensorRef:
    """A sensor with the ids above it, for O(1) lookups on the ingest path."""

    site: str
    gateway: str
    spec: SensorSpec

    @property
    def id(self) -> str:
        return self.spec.id


class Registry:
    """Indexed, immutable view of a validated registry."""

    def __init__(self, spec: RegistrySpec) -> None:
        self.spec = spec
        self.sites: dict[str, SiteSpec] = {s.id: s for s in spec.sites}
        self.gateways: dict[str, GatewaySpec] = {}
        self.gateway_site: dict[str, str] = {}
        self.sensors: dict[str, SensorRef] = {}
        for site in spec.sites:
            for gw in site.gateways:
                self.gateways[gw.id] = gw
                self.gateway_site[gw.id] = site.id
                for sensor in gw.sensors:
                    self.sensors[sensor.id] = SensorRef(site.id, gw.id, sensor)
        self._allowed: frozenset[tuple[str, str, str]] = frozenset(
            (ref.gateway, ref.id, m) for ref in self.sensors.values() for m in ref.spec.metrics
        )

    def allows(self, gateway: str, sensor: str, metric: str) -> bool:
        """True when ``sensor`` belongs to ``gateway`` and reports ``metric``."""
        return (gateway, sensor, metric) in self._allowed

    def site_of(self, gateway: str) -> str | None:
        return self.gateway_site.get(gateway)

    def sensors_of(self, gateway: str) -> tuple[SensorSpec, ...]:
        return self.gateways[gateway].sensors

    def iter_gateways(self) -> Iterator[tuple[SiteSpec, GatewaySpec]]:
        for site in self.spec.sites:
            for gw in site.gateways:
                yield site, gw


_Path = YamlPath


def parse_registry(text: str, *, source: str = "<registry>") -> Registry:
    try:
        data, lines = compose_with_lines(text)
    except YamlLinesError as exc:
        raise RegistryError(exc.message, source=source, line=exc.line) from exc
    try:
        spec = RegistrySpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = _drop_driver_tag(clean_loc(err["loc"]))
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc = (*loc, "type")
        dotted = ".".join(str(p) for p in loc)
        raise RegistryError(f"{dotted}: {err['msg']}", source=source,
                            line=line_for(loc, lines)) from exc
    _check_unique(spec, lines, source)
    _check_drivers(spec, lines, source)
    return Registry(spec)


_DRIVER_TYPES = ("modbus-tcp", "modbus-rtu", "lorawan", "simulated")


def _drop_driver_tag(loc: YamlPath) -> YamlPath:
    """pydantic puts the union's tag after ``driver`` (``driver.modbus-tcp.port``); the YAML has none."""
    return tuple(p for i, p in enumerate(loc)
                 if not (i > 0 and loc[i - 1] == "driver" and p in _DRIVER_TYPES))


def _check_unique(spec: RegistrySpec, lines: Mapping[_Path, int], source: str) -> None:
    seen: dict[tuple[str, str], _Path] = {}

    def once(kind: str, ident: str, path: _Path) -> None:
        if (kind, ident) in seen:
            first = lines.get((*seen[(kind, ident)], "id"))
            raise RegistryError(f"duplicate {kind} id {ident!r} (first on line {first})",
                                source=source, line=lines.get((*path, "id")))
        seen[(kind, ident)] = path

    for si, site in enumerate(spec.sites):
        once("site", site.id, ("sites", si))
        for gi, gw in enumerate(site.gateways):
            gpath: _Path = ("sites", si, "gateways", gi)
            once("gateway", gw.id, gpath)
            for ni, sensor in enumerate(gw.sensors):
                once("sensor", sensor.id, (*gpath, "sensors", ni))


def _check_drivers(spec: RegistrySpec, lines: Mapping[_Path, int], source: str) -> None:
    """Across sensors: a driver reads only the sensor's metrics, once each; a LoRaWAN device
    belongs to one sensor; the sensors on one serial port agree on its line settings."""
    dev_euis: dict[str, _Path] = {}
    serial: dict[str, tuple[_Path, tuple[int, str, int, int]]] = {}
    for si, site in enumerate(spec.sites):
        for gi, gw in enumerate(site.gateways):
            for ni, sensor in enumerate(gw.sensors):
                path: _Path = ("sites", si, "gateways", gi, "sensors", ni, "driver")
                d = sensor.driver
                seen: set[str] = set()
                for m, sub in driver_metrics(d):
                    where = (*path, *sub)
                    if m not in sensor.metrics:
                        raise RegistryError(
                            f"{'.'.join(map(str, where))}: metric {m!r} is not one of sensor "
                            f"{sensor.id!r}'s metrics ({', '.join(sensor.metrics)})",
                            source=source, line=line_for(where, lines))
                    if m in seen:
                        raise RegistryError(f"{'.'.join(map(str, where))}: metric {m!r} read twice",
                                            source=source, line=line_for(where, lines))
                    seen.add(m)
                if isinstance(d, LorawanDriver):
                    if d.dev_eui in dev_euis:
                        first = lines.get((*dev_euis[d.dev_eui], "dev_eui"))
                        raise RegistryError(f"dev_eui {d.dev_eui} used twice (first on line {first})",
                                            source=source, line=lines.get((*path, "dev_eui")))
                    dev_euis[d.dev_eui] = path
                if isinstance(d, ModbusRtuDriver):
                    line = (d.baudrate, d.parity, d.stopbits, d.bytesize)
                    if d.port in serial and serial[d.port][1] != line:
                        first = lines.get((*serial[d.port][0], "port"))
                        raise RegistryError(
                            f"serial port {d.port} has other settings (baudrate, parity, stopbits, "
                            f"bytesize) than on line {first}", source=source, line=lines.get((*path, "port")))
                    serial.setdefault(d.port, (path, line))


def load_registry(path: str | Path | None = None) -> Registry:
    """Load a registry file, or the bundled Nam Định demo registry when ``path`` is None."""
    if path is None:
        text = resources.files("contract").joinpath("data/nam-dinh.yaml").read_text("utf-8")
        return parse_registry(text, source="nam-dinh.yaml")
    p = Path(path)
    try:
        text = p.read_text("utf-8")
    except OSError as exc:
        raise RegistryError(f"cannot read registry: {exc}", source=str(p)) from exc
    return parse_registry(text, source=str(p))
