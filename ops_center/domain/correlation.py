"""Correlation patterns: which alerts belong together, and when they make an incident.

Patterns are data (``ops_center/rulebook/patterns.yaml``), tried in file order. A pattern
names its member alerts (by category, rule, rule kind, sensor kind), how members are
grouped (site, gateway, sensor, or a sensor attribute such as ``factory`` or ``zone``, with
an optional distance limit), and the conditions that open an incident from the active
members of a group (any of; each condition needs every one of its ``all_of`` matches).
``upgrades`` lets a pattern take over an open incident of a milder kind in the same group
(gas leak → fire risk when heat or smoke joins the gas at one factory).

Topology (gateway outages and the area outage) is built into the incident manager; its
kinds, titles and thresholds are in ``IncidentSettings``.
"""

from __future__ import annotations

import math
import string
from collections.abc import Mapping
from typing import Final

from pydantic import Field, field_validator

from contract.catalog import SENSOR_KINDS
from contract.registry import Registry, SensorSpec
from ops_center.domain.alerts import Alert, Severity, severity_rank
from ops_center.domain.rules.base import Names, Strict, StrTuple


class Match(Strict):
    category: StrTuple = ()
    rule: StrTuple = ()
    rule_kind: StrTuple = ()
    sensor_kind: StrTuple = ()
    min_severity: Severity = "info"

    def matches(self, alert: Alert, sensor_kind: str | None) -> bool:
        if self.category and alert.category not in self.category:
            return False
        if self.rule and alert.rule not in self.rule:
            return False
        if self.rule_kind and alert.rule_kind not in self.rule_kind:
            return False
        if self.sensor_kind and sensor_kind not in self.sensor_kind:
            return False
        return severity_rank(alert.severity) >= severity_rank(self.min_severity)


class Condition(Strict):
    all_of: tuple[Match, ...] = Field(min_length=1)
    min_alerts: int = Field(default=1, ge=1)

    def satisfied(self, members: list[tuple[Alert, str | None]]) -> bool:
        if len(members) < self.min_alerts:
            return False
        return all(any(m.matches(a, k) for a, k in members) for m in self.all_of)


class Pattern(Strict):
    kind: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")
    title: Names
    members: tuple[Match, ...] = Field(min_length=1)
    opens: tuple[Condition, ...] = Field(min_length=1)
    group_by: str = "site"
    distance_m: float | None = Field(default=None, gt=0)
    # How long (event time) an unmatched member waits in a group for its partners.
    window_s: float = Field(default=3600.0, gt=0)
    # Wait this long with the condition met before opening (lets a gateway outage absorb
    # its sensors' silence first).
    open_delay_s: float = Field(default=0.0, ge=0)
    upgrades: StrTuple = ()
    severity_floor: Severity | None = None

    @field_validator("group_by")
    @classmethod
    def _group(cls, value: str) -> str:
        if value in ("site", "gateway", "sensor") or (value.startswith("attr:") and len(value) > 5):
            return value
        raise ValueError("group_by is site, gateway, sensor or attr:NAME")

    def accepts(self, alert: Alert, sensor_kind: str | None) -> bool:
        return any(m.matches(alert, sensor_kind) for m in self.members)


def _default_escalation() -> dict[Severity, float]:
    return {"critical": 900.0, "emergency": 300.0}


class IncidentSettings(Strict):
    auto_resolve_hold_s: float = Field(default=900.0, ge=0)
    reopen_window_s: float = Field(default=3600.0, ge=0)
    escalate_after_s: dict[Severity, float] = Field(default_factory=_default_escalation)
    area_min_gateways: int = Field(default=2, ge=2)
    area_window_s: float = Field(default=900.0, gt=0)
    notify_min_severity: Severity = "warning"
    gateway_title: Names = Names(vi="Mất kết nối cổng {gateway_name}", en="Gateway {gateway_name} offline")
    area_title: Names = Names(vi="Mất kết nối diện rộng tại {site_name}",
                              en="Wide-area outage in {site_name}")
    gateway_severity_floor: Severity = "warning"
    area_severity_floor: Severity = "critical"


class PatternSet(Strict):
    version: int = 1
    settings: IncidentSettings = Field(default_factory=IncidentSettings)
    patterns: tuple[Pattern, ...] = Field(min_length=1)


# --- grouping and titles -----------------------------------------------------------------------

def group_value(pattern: Pattern, alert: Alert, registry: Registry) -> str:
    """The group an alert falls in for a pattern (within its site)."""
    g = pattern.group_by
    if g == "site":
        return alert.site
    if g == "gateway":
        return alert.gateway
    if g == "sensor":
        return alert.sensor or alert.gateway
    name = g[5:]
    ref = registry.sensors.get(alert.sensor) if alert.sensor else None
    value = ref.spec.attrs.get(name) if ref is not None else None
    # Without the attribute, a sensor groups with its gateway's other sensors.
    return f"{name}={value}" if value is not None else f"gateway={alert.gateway}"


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine), metres."""
    r = 6_371_000.0
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(h))


def sensor_position(registry: Registry, sensor: str | None, gateway: str) -> tuple[float, float] | None:
    if sensor is not None and sensor in registry.sensors:
        loc = registry.sensors[sensor].spec.location
        if loc is not None:
            return loc.lat, loc.lon
    gw = registry.gateways.get(gateway)
    if gw is not None and gw.location is not None:
        return gw.location.lat, gw.location.lon
    return None


class _Context(dict[str, str]):
    """Template values; a missing key falls back to the site name."""

    def __init__(self, values: Mapping[str, str], fallback: str) -> None:
        super().__init__(values)
        self.fallback = fallback

    def __missing__(self, key: str) -> str:
        return self.fallback


# Attributes whose registry value is a slug, named for people by ``<attr>_name_vi`` / ``_en``.
NAMED_ATTRS: Final = ("zone", "factory")


def display_attrs(attrs: Mapping[str, object], lang: str) -> dict[str, str]:
    """A sensor's attributes as titles show them: a zone or factory by its display name."""
    out = {k: str(v) for k, v in attrs.items()}
    for base in NAMED_ATTRS:
        name = attrs.get(f"{base}_name_{lang}") or attrs.get(f"{base}_name_vi")
        if base in out and name:
            out[base] = str(name)
    return out


def sensor_display_name(spec: SensorSpec, lang: str) -> str:
    """The registry's name, else the kind's catalog name with the id ("Cảm biến ngập đường tn-flood-01")."""
    if spec.name is not None:
        return str(getattr(spec.name, lang))
    kind = SENSOR_KINDS.get(spec.kind)
    return f"{kind.name_en if lang == 'en' else kind.name_vi} {spec.id}" if kind is not None else spec.id


def title_context(registry: Registry, site: str, alerts: list[Alert], lang: str) -> _Context:
    site_spec = registry.sites.get(site)
    site_name = getattr(site_spec.name, lang) if site_spec is not None else site
    values: dict[str, str] = {"site": site, "site_name": site_name}
    for a in alerts:
        values.setdefault("gateway", a.gateway)
        gw = registry.gateways.get(a.gateway)
        if gw is not None:
            values.setdefault("gateway_name", getattr(gw.name, lang) if gw.name is not None else gw.id)
        if a.sensor is None or a.sensor not in registry.sensors:
            continue
        spec = registry.sensors[a.sensor].spec
        values.setdefault("sensor", spec.id)
        values.setdefault("sensor_name", sensor_display_name(spec, lang))
        for k, v in display_attrs(spec.attrs, lang).items():
            values.setdefault(k, v)
    values.setdefault("gateway_name", values.get("gateway", site_name))
    values.setdefault("sensor_name", values.get("sensor", site_name))
    return _Context(values, site_name)


def render(template: str, ctx: _Context) -> str:
    return string.Formatter().vformat(template, (), ctx)


def check_templates(patterns: PatternSet) -> list[tuple[int, str]]:
    """(pattern index, problem) for templates that do not parse."""
    problems: list[tuple[int, str]] = []
    dummy = _Context({}, "x")
    for i, p in enumerate(patterns.patterns):
        for t in (p.title.vi, p.title.en):
            try:
                render(t, dummy)
            except (ValueError, IndexError, KeyError) as exc:
                problems.append((i, f"bad title template {t!r}: {exc}"))
    return problems
