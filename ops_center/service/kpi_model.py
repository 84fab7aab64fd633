"""What the KPI service (ops_center/service/kpi.py) answers: plain frozen records, named like
the API's answers (``OverviewOut``, ``CityOverviewOut``… in ops_center/api/schemas/catalog.py),
which read them by attribute (``model_validate(view, from_attributes=True)``). The service
knows no schema; the API knows how to show a view."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime


@dataclass(frozen=True, slots=True)
class Label:
    vi: str
    en: str


@dataclass(frozen=True, slots=True)
class AqiView:
    """A station's VN_AQI this hour (AQIʰ)."""

    value: int
    category: Label
    colour: str
    dominant: str
    sensor: str
    hour: datetime


@dataclass(frozen=True, slots=True)
class DailyAqiView:
    """A station's VN_AQI of a Vietnam day (AQIᵈ); ``partial`` for today."""

    day: date
    value: int
    category: Label
    colour: str
    dominant: str
    sensor: str
    partial: bool


@dataclass(frozen=True, slots=True)
class IncidentTally:
    info: int = 0
    warning: int = 0
    critical: int = 0
    emergency: int = 0
    total: int = 0


@dataclass(frozen=True, slots=True)
class SiteOverview:
    site: str
    name: Label
    generated_at: datetime
    sensors_total: int
    sensors_online: int
    sensors_online_pct: float | None
    gateways_total: int
    gateways_online: int
    data_completeness_pct: float | None
    completeness_window_s: int
    open_incidents: IncidentTally
    aqi: AqiView | None
    aqi_daily: tuple[DailyAqiView, ...]
    dead_letters_today: int


@dataclass(frozen=True, slots=True)
class CityOverview:
    generated_at: datetime
    sites: tuple[SiteOverview, ...]
    sensors_total: int
    sensors_online: int
    sensors_online_pct: float | None
    open_incidents: IncidentTally
    dead_letters_today: int
