"""The SensorThings entities the registry and the catalog define (everything but Observations),
with their relations. Pure; built once per registry.

| SensorThings | smartward | ``@iot.id`` |
|---|---|---|
| Thing | a gateway | gateway id (``tn-gw-01``) |
| Location | the gateway's position (else its site's) | gateway id |
| Sensor | a registry sensor (device) | sensor id (``tn-aq-01``) |
| ObservedProperty | a catalog metric | metric code (``pm25``) |
| Datastream | sensor × metric, unit from the catalog | ``{sensor}:{metric}`` |
| Observation | a stored reading | ``{sensor}:{metric}:{time}`` (RFC 3339, UTC) |

Names and descriptions are Vietnamese first, then English.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from contract.catalog import METRICS, SENSOR_KINDS
from contract.registry import Location, Registry

OM_MEASUREMENT: Final = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement"
GEOJSON: Final = "application/geo+json"


@dataclass(frozen=True, slots=True)
class Ent:
    """One entity: its collection, id, the site that scopes it (None: visible to every user)
    and its properties (no links: those depend on the request's base URL)."""

    collection: str
    id: str
    site: str | None
    name: str
    body: Mapping[str, Any]


@dataclass(slots=True)
class StaCatalog:
    entities: dict[str, dict[str, Ent]] = field(default_factory=dict)
    # (collection, id, navigation) -> ids in the target collection
    relations: dict[tuple[str, str, str], list[str]] = field(default_factory=dict)

    def get(self, collection: str, ident: str) -> Ent | None:
        return self.entities.get(collection, {}).get(ident)

    def related(self, collection: str, ident: str, nav: str) -> list[str]:
        return self.relations.get((collection, ident, nav), [])


def datastream_id(sensor: str, metric: str) -> str:
    return f"{sensor}:{metric}"


def split_datastream_id(ident: str) -> tuple[str, str] | None:
    sensor, sep, metric = ident.partition(":")
    return (sensor, metric) if sep and ":" not in metric else None


def time_text(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def observation_id(sensor: str, metric: str, t: datetime) -> str:
    return f"{sensor}:{metric}:{time_text(t)}"


def split_observation_id(ident: str) -> tuple[str, str, datetime] | None:
    parts = ident.split(":", 2)
    if len(parts) != 3:
        return None
    try:
        t = datetime.fromisoformat(parts[2].replace("Z", "+00:00"))
        if t.tzinfo is None:
            return None
        return parts[0], parts[1], t.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _point(loc: Location) -> dict[str, Any]:
    return {"type": "Point", "coordinates": [loc.lon, loc.lat]}


@functools.lru_cache(maxsize=8)
def catalog_for(registry: Registry) -> StaCatalog:
    """The registry is immutable, so its catalog is computed once."""
    cat = StaCatalog({c: {} for c in ("Things", "Locations", "Sensors", "ObservedProperties", "Datastreams")})
    rel = cat.relations

    def add(e: Ent) -> None:
        cat.entities[e.collection][e.id] = e

    def link(collection: str, ident: str, nav: str, target: str) -> None:
        rel.setdefault((collection, ident, nav), []).append(target)

    for m in METRICS.values():
        add(Ent("ObservedProperties", m.code, None, m.name_vi, {
            "name": m.name_vi,
            "description": f"{m.name_vi} / {m.name_en}",
            "definition": f"urn:smartward:metric:{m.code}",
            "properties": {"code": m.code, "name_en": m.name_en, "unit": m.unit},
        }))
    for site, gw in registry.iter_gateways():
        gname = gw.name.vi if gw.name else gw.id
        add(Ent("Things", gw.id, site.id, gw.id, {
            "name": gw.id,
            "description": f"Gateway {gname} — {site.name.vi} / gateway {gw.id} — {site.name.en}",
            "properties": {"site": site.id, "site_name_vi": site.name.vi, "site_name_en": site.name.en,
                           "site_kind": site.kind},
        }))
        loc = gw.location or site.location
        add(Ent("Locations", gw.id, site.id, gw.id, {
            "name": f"Vị trí {gw.id} / location of {gw.id}",
            "description": f"{site.name.vi} / {site.name.en}",
            "encodingType": GEOJSON,
            "location": _point(loc),
            "properties": {"placeholder": loc.placeholder},
        }))
        link("Things", gw.id, "Locations", gw.id)
        link("Locations", gw.id, "Things", gw.id)
        for s in gw.sensors:
            kind = SENSOR_KINDS[s.kind]
            add(Ent("Sensors", s.id, site.id, s.id, {
                "name": s.id,
                "description": f"{kind.name_vi} / {kind.name_en}",
                "encodingType": "text/plain",
                "metadata": f"urn:smartward:sensor-kind:{kind.code}",
                "properties": {"kind": kind.code, "gateway": gw.id, "site": site.id,
                               "interval_s": s.interval_s},
            }))
            for code in s.metrics:
                m = METRICS[code]
                ds = datastream_id(s.id, code)
                add(Ent("Datastreams", ds, site.id, ds, {
                    "name": f"{s.id} {code}",
                    "description": f"{m.name_vi} — {kind.name_vi} {s.id} / "
                                   f"{m.name_en} — {kind.name_en} {s.id}",
                    "observationType": OM_MEASUREMENT,
                    "unitOfMeasurement": {"name": m.unit or "1", "symbol": m.unit,
                                          "definition": f"urn:smartward:unit:{code}"},
                    "properties": {"sensor": s.id, "metric": code, "gateway": gw.id, "site": site.id,
                                   "min": m.min, "max": m.max},
                }))
                link("Things", gw.id, "Datastreams", ds)
                link("Sensors", s.id, "Datastreams", ds)
                link("ObservedProperties", code, "Datastreams", ds)
                link("Datastreams", ds, "Thing", gw.id)
                link("Datastreams", ds, "Sensor", s.id)
                link("Datastreams", ds, "ObservedProperty", code)
    return cat
