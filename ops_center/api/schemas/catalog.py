"""The catalog, sites and their KPIs, gateways, sensors and readings."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import Field

from ops_center.api.errors import Localized
from ops_center.api.schemas.common import OutModel


class KindOut(OutModel):
    code: str
    name: Localized
    metrics: list[str]


class MetricOut(OutModel):
    code: str
    name: Localized
    unit: str
    boolean: bool


class CatalogOut(OutModel):
    kinds: list[KindOut]
    metrics: list[MetricOut]


# --- sites and KPIs ----------------------------------------------------------------------------


class LocationOut(OutModel):
    lat: float
    lon: float


class SiteOut(OutModel):
    id: str
    name: Localized
    kind: str
    parent: str | None
    location: LocationOut
    gateways: int
    sensors: int


class AqiOut(OutModel):
    value: int
    category: Localized
    colour: str
    dominant: str
    sensor: str
    hour: datetime


class DailyAqiOut(OutModel):
    """QĐ 1459 daily VN_AQI (AQIᵈ) of a Vietnam day (ops_center/domain/aqi_station.py)."""

    day: date
    value: int
    category: Localized
    colour: str
    dominant: str
    sensor: str
    partial: bool = Field(description="today: from the hours so far")


class IncidentCounts(OutModel):
    info: int = 0
    warning: int = 0
    critical: int = 0
    emergency: int = 0
    total: int = 0


class OverviewOut(OutModel):
    site: str
    name: Localized
    generated_at: datetime
    sensors_total: int
    sensors_online: int
    sensors_online_pct: float | None = Field(description="fresh within 3 × interval_s")
    gateways_total: int
    gateways_online: int
    data_completeness_pct: float | None = Field(
        description="batches stored / expected from seq over the window, discounted by silence"
    )
    completeness_window_s: int
    open_incidents: IncidentCounts
    aqi: AqiOut | None = Field(description="VN_AQI (QĐ 1459/QĐ-TCMT), worst station of the site, this hour")
    aqi_daily: list[DailyAqiOut] = Field(
        default_factory=list, description="daily VN_AQI, yesterday and today, worst station of the site"
    )
    dead_letters_today: int


class CityOverviewOut(OutModel):
    generated_at: datetime
    sites: list[OverviewOut]
    sensors_total: int
    sensors_online: int
    sensors_online_pct: float | None
    open_incidents: IncidentCounts
    dead_letters_today: int


# --- gateways and sensors ------------------------------------------------------------------------


class GatewayOut(OutModel):
    id: str
    site: str
    name: Localized | None
    state: Literal["online", "offline", "unknown"]
    last_seen: datetime | None
    outbox_batches: int | None
    outbox_oldest: datetime | None
    dropped_batches: int | None
    last_seq: int | None
    agent: str | None
    sensors: int


class LatestOut(OutModel):
    metric: str
    unit: str
    value: float
    time: datetime
    quality: str
    age_s: float
    fresh: bool


class SensorOut(OutModel):
    id: str
    site: str
    gateway: str
    kind: str
    name: Localized | None
    interval_s: int
    online: bool
    last_seen: datetime | None
    values: list[LatestOut]


class PointOut(OutModel):
    time: datetime
    value: float
    min: float | None = None
    max: float | None = None
    count: int | None = None
    quality: str | None = None


class ReadingsOut(OutModel):
    sensor: str
    metric: str
    unit: str
    start: datetime
    end: datetime
    bucket: str = Field(description="'raw', or the bucket width (1m ... 1d)")
    source: Literal["readings", "readings_1m", "readings_1h"]
    points: list[PointOut]
    truncated: bool = False
    next_start: datetime | None = None


# --- operations ----------------------------------------------------------------------------------


class HealthOut(OutModel):
    status: Literal["ok"] = "ok"


class ReadyOut(OutModel):
    ready: bool
    checks: dict[str, bool]
