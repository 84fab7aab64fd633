"""The registry (and the metric catalog) as rows of the ``sites``, ``gateways``, ``sensors``
and ``metrics`` tables, for every store's ``sync_registry``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from contract.catalog import METRICS, SENSOR_KINDS
from contract.registry import Registry


class SiteRow(NamedTuple):
    id: str
    name_vi: str
    name_en: str
    kind: str
    parent: str | None
    legacy_name: str | None
    lat: float
    lon: float


class GatewayRow(NamedTuple):
    id: str
    site: str
    name_vi: str | None
    name_en: str | None
    lat: float | None
    lon: float | None


class SensorRow(NamedTuple):
    id: str
    gateway: str
    site: str
    kind: str
    metrics: list[str]
    interval_s: int
    name_vi: str
    name_en: str
    lat: float | None
    lon: float | None
    attrs: dict[str, str | int | float | bool]


class MetricRow(NamedTuple):
    code: str
    unit: str
    name_vi: str
    name_en: str
    min: float
    max: float
    boolean: bool


@dataclass(frozen=True, slots=True)
class RegistryRows:
    sites: list[SiteRow]
    gateways: list[GatewayRow]
    sensors: list[SensorRow]
    metrics: list[MetricRow]


def registry_rows(registry: Registry) -> RegistryRows:
    sites: list[SiteRow] = []
    gateways: list[GatewayRow] = []
    sensors: list[SensorRow] = []
    for site in registry.spec.sites:
        sites.append(SiteRow(site.id, site.name.vi, site.name.en, site.kind, site.parent, site.legacy_name,
                             site.location.lat, site.location.lon))
        for gw in site.gateways:
            gloc = gw.location
            gateways.append(GatewayRow(gw.id, site.id, gw.name.vi if gw.name else None,
                                       gw.name.en if gw.name else None,
                                       gloc.lat if gloc else None, gloc.lon if gloc else None))
            for s in gw.sensors:
                kind = SENSOR_KINDS[s.kind]
                # A sensor without a name of its own is called by its kind and id, so that
                # dashboards never show an empty label.
                name_vi = s.name.vi if s.name else f"{kind.name_vi} {s.id}"
                name_en = s.name.en if s.name else f"{kind.name_en} {s.id}"
                loc = s.location
                sensors.append(SensorRow(s.id, gw.id, site.id, s.kind, list(s.metrics), s.interval_s,
                                         name_vi, name_en, loc.lat if loc else None, loc.lon if loc else None,
                                         dict(s.attrs)))
    metrics = [MetricRow(m.code, m.unit, m.name_vi, m.name_en, m.min, m.max, m.boolean)
               for m in METRICS.values()]
    return RegistryRows(sites, gateways, sensors, metrics)
