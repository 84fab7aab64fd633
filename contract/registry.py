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
from typing import Annotated, Literal

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
    # True where FACTS.md has no verified position (e.g. CCN An Xá, §5.3).
    placeholder: bool = False


class SensorSpec(_Strict):
    id: SlugStr
    kind: str
    metrics: tuple[str, ...] = ()
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
        loc = clean_loc(err["loc"])
        dotted = ".".join(str(p) for p in loc)
        raise RegistryError(f"{dotted}: {err['msg']}", source=source,
                            line=line_for(loc, lines)) from exc
    _check_unique(spec, lines, source)
    return Registry(spec)


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
