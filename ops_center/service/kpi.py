"""Site KPIs for the operations screen (``/sites/{site}/overview``, the city overview and
the live stream's ``kpi`` events), as plain records (ops_center/service/kpi_model.py) that
the API turns into its answers.

- Sensors online: a sensor is online when its newest reading (reading time) is within
  3 × its ``interval_s`` of now.
- Data completeness, per gateway over ``completeness_window_s``: batches stored / batches
  expected, where expected spans the seqs handled in the window (a gap in ``seq``, lost or
  still pending, and batches the gateway declared dropped all count as missing; a
  dead-lettered batch is not stored), multiplied by the share of the window the gateway was
  not silent (silence = no batch for more than 3 × its shortest sensor interval, which a
  seq gap cannot show until the gateway is back). The site value is the mean over its
  registered gateways; a gateway with nothing in the window counts 0.
- VN_AQI now: QĐ 1459/QĐ-TCMT hourly AQI (ops_center/domain/aqi.py) from the hourly means
  (``readings_1h``) of each air-quality station, NowCast over 12 hours for PM; the site
  shows its worst station. Per station, now and by day: ops_center/domain/aqi_station.py.
- Dead letters today: since midnight Asia/Ho_Chi_Minh (UTC+7, no daylight saving).

Overviews are cached per site for ``overview_cache_s`` (2 s by default; the live stream pushes
changes as they happen, the overview may lag that much): many screens polling one ward cost
one computation. At most one computation per site runs at a time (the others wait for it,
never start their own), and once an entry is half its age a single background refresh
replaces it, so under steady polling nobody waits for a computation and no answer is older
than ``overview_cache_s``. The cache keeps the JSON body too (made by the ``render`` the API
passes in): a hit is served without touching the store, the thread pool or the serializer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from contract.catalog import METRICS
from contract.registry import Registry, SensorSpec
from ops_center.adapters.ports import GatewayRepository, IncidentRepository, ReadingsReader
from ops_center.adapters.records import GatewayBatchStats
from ops_center.adapters.repository import RepositoryError
from ops_center.domain.aqi import PM, AqiResult, category
from ops_center.domain.aqi_station import (
    AQI_METRICS,
    HOUR,
    start_of_vn_day,
    station_daily,
    station_hourly,
)
from ops_center.service.kpi_model import (
    AqiView,
    CityOverview,
    DailyAqiView,
    IncidentTally,
    Label,
    SiteOverview,
)
from ops_center.settings import OpsSettings

logger = logging.getLogger(__name__)

FRESH_INTERVALS: Final = 3
# Readings travel in their gateway's batches (every 5 s from a production edge, every 60 s of
# simulated time in the demo's stack): a sensor reporting every 10 s would otherwise flap
# between online and silent with each batch. Like the freshness rule's min_silence_s.
MIN_FRESH_S: Final = 120.0
SEVERITIES: Final = ("info", "warning", "critical", "emergency")


def start_of_local_day(now: datetime) -> datetime:
    return start_of_vn_day(now).astimezone(UTC)


def fresh_s(interval_s: float) -> float:
    """How long a reading (or a batch) of something reporting every ``interval_s`` stays fresh."""
    return max(FRESH_INTERVALS * interval_s, MIN_FRESH_S)


def is_fresh(spec: SensorSpec, reading_time: datetime, now: datetime) -> bool:
    return (now - reading_time).total_seconds() <= fresh_s(spec.interval_s)


def gateway_completeness(
    stats: GatewayBatchStats | None, silence_s: float, window_s: float, now: datetime
) -> float:
    """0..1 for one gateway (see the module's docstring)."""
    if stats is None or stats.batches == 0:
        return 0.0
    top = max(stats.max_seq, stats.dropped_through)
    expected = top - stats.min_seq + 1
    seq_ratio = stats.stored / expected if expected > 0 else 0.0
    silent_for = (now - stats.last_received).total_seconds()
    fresh_ratio = 1.0 if silent_for <= silence_s else max(0.0, 1.0 - min(silent_for, window_s) / window_s)
    return max(0.0, min(1.0, seq_ratio * fresh_ratio))


def _label(result: AqiResult) -> Label:
    cat = category(result.value)
    return Label(vi=cat.label_vi, en=cat.label_en)


@dataclass(frozen=True, slots=True)
class _Entry:
    started: float  # monotonic time when its computation began: the age of its data
    overview: SiteOverview
    body: bytes  # the overview as the API answers it (JSON, by ``render``)


class KpiService:
    def __init__(
        self,
        readings: ReadingsReader,
        gateways: GatewayRepository,
        incidents: IncidentRepository,
        registry: Registry,
        settings: OpsSettings,
        clock: Callable[[], datetime],
        *,
        render: Callable[[SiteOverview], bytes],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.readings = readings
        self.gateways = gateways
        self.incidents = incidents
        self.registry = registry
        self.settings = settings
        self.clock = clock
        self._render = render
        self._monotonic = monotonic
        self._cache: dict[str, _Entry] = {}
        self._computing: dict[str, threading.Lock] = {}  # one per site: a single computation at once
        self._refreshing: set[str] = set()
        self._lock = threading.Lock()  # guards the two above
        self._refresher: ThreadPoolExecutor | None = None
        self._closed = False

    def site_overview(self, site: str) -> SiteOverview:
        return self._entry(site).overview

    def site_overview_json(self, site: str) -> bytes:
        """The overview as the API's JSON body."""
        return self._entry(site).body

    def cached_json(self, site: str) -> bytes | None:
        """The cached body while it is fresh, else None; no I/O and no waiting, for the event
        loop. Schedules the refresh ahead of expiry."""
        ttl = self.settings.overview_cache_s
        hit = self._cache.get(site)
        if ttl <= 0 or hit is None:
            return None
        age = self._monotonic() - hit.started
        if age >= ttl:
            return None
        if age >= ttl / 2:
            self._refresh_ahead(site)
        return hit.body

    def close(self) -> None:
        """Stop the background refresher (the app's lifespan ends)."""
        with self._lock:
            self._closed = True
            refresher, self._refresher = self._refresher, None
        if refresher is not None:
            refresher.shutdown(wait=True, cancel_futures=True)

    def _entry(self, site: str) -> _Entry:
        ttl = self.settings.overview_cache_s
        if ttl <= 0:
            return self._fresh_entry(site)
        hit = self._cache.get(site)
        if hit is not None and self._monotonic() - hit.started < ttl:
            return hit
        with self._site_lock(site):
            hit = self._cache.get(site)  # computed while this thread waited for the lock
            if hit is not None and self._monotonic() - hit.started < ttl:
                return hit
            entry = self._cache[site] = self._fresh_entry(site)
            return entry

    def _fresh_entry(self, site: str) -> _Entry:
        started = self._monotonic()
        overview = self._compute(site, self.clock())
        return _Entry(started, overview, self._render(overview))

    def _site_lock(self, site: str) -> threading.Lock:
        with self._lock:
            return self._computing.setdefault(site, threading.Lock())

    def _refresh_ahead(self, site: str) -> None:
        with self._lock:
            if self._closed or site in self._refreshing:
                return
            self._refreshing.add(site)
            if self._refresher is None:
                self._refresher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="smartward-kpi")
            self._refresher.submit(self._refresh, site)

    def _refresh(self, site: str) -> None:
        try:
            with self._site_lock(site):
                self._cache[site] = self._fresh_entry(site)
        except RepositoryError as exc:  # the entry expires; the next request recomputes and answers 503
            logger.warning("overview of %s not refreshed: %s", site, exc)
        except Exception:  # the top of the refresher's job: a bug must not stop later refreshes
            logger.exception("overview of %s failed", site)
        finally:
            with self._lock:
                self._refreshing.discard(site)

    def city_overview(self, sites: Sequence[str]) -> CityOverview:
        views = tuple(self.site_overview(s) for s in sites)
        counts = IncidentTally(
            **{
                k: sum(getattr(v.open_incidents, k) for v in views)
                for k in ("info", "warning", "critical", "emergency", "total")
            }
        )
        total = sum(v.sensors_total for v in views)
        online = sum(v.sensors_online for v in views)
        return CityOverview(
            generated_at=self.clock(),
            sites=views,
            sensors_total=total,
            sensors_online=online,
            sensors_online_pct=round(100.0 * online / total, 1) if total else None,
            open_incidents=counts,
            dead_letters_today=sum(v.dead_letters_today for v in views),
        )

    # --- computation ------------------------------------------------------------------------

    def _compute(self, site_id: str, now: datetime) -> SiteOverview:
        site = self.registry.sites[site_id]
        sensors = [(gw.id, s) for gw in site.gateways for s in gw.sensors]
        pairs = [(s.id, m) for _, s in sensors for m in s.metrics]
        horizon = max((fresh_s(s.interval_s) for _, s in sensors), default=MIN_FRESH_S)
        latest = self.readings.latest_values(pairs, now - timedelta(seconds=horizon))
        newest: dict[str, datetime] = {}
        for v in latest:
            if v.sensor not in newest or v.time > newest[v.sensor]:
                newest[v.sensor] = v.time
        online_ids = {s.id for _, s in sensors if s.id in newest and is_fresh(s, newest[s.id], now)}

        window_s = self.settings.completeness_window_s
        stats = {
            st.gateway: st
            for st in self.gateways.batch_stats(
                [gw.id for gw in site.gateways], now - timedelta(seconds=window_s)
            )
        }
        parts: list[float] = []
        gateways_online = 0
        for gw in site.gateways:
            silence = fresh_s(min((s.interval_s for s in gw.sensors), default=60))
            parts.append(gateway_completeness(stats.get(gw.id), silence, window_s, now))
            st = stats.get(gw.id)
            if st is not None and (now - st.last_received).total_seconds() <= silence:
                gateways_online += 1
        completeness = round(100.0 * sum(parts) / len(parts), 1) if parts else None

        by_severity = self.incidents.open_incident_counts([site_id]).get(site_id, {})
        counts = IncidentTally(
            **{k: n for k, n in by_severity.items() if k in SEVERITIES}, total=sum(by_severity.values())
        )
        dead_today = self.gateways.dead_letter_counts([site_id], start_of_local_day(now)).get(site_id, 0)

        aqi_now, aqi_daily = self._aqi([s for _, s in sensors], now)
        return SiteOverview(
            site=site_id,
            name=Label(vi=site.name.vi, en=site.name.en),
            generated_at=now,
            sensors_total=len(sensors),
            sensors_online=len(online_ids),
            sensors_online_pct=round(100.0 * len(online_ids) / len(sensors), 1) if sensors else None,
            gateways_total=len(site.gateways),
            gateways_online=gateways_online,
            data_completeness_pct=completeness,
            completeness_window_s=window_s,
            open_incidents=counts,
            aqi=aqi_now,
            aqi_daily=aqi_daily,
            dead_letters_today=dead_today,
        )

    def _aqi(
        self, sensors: Sequence[SensorSpec], now: datetime
    ) -> tuple[AqiView | None, tuple[DailyAqiView, ...]]:
        """The site's VN_AQI now and by day: its worst station's."""
        hourly, daily = self.station_aqi_all(sensors, now)
        worst: dict[object, DailyAqiView] = {}
        for d in daily:
            if d.day not in worst or d.value > worst[d.day].value:
                worst[d.day] = d
        return max(hourly.values(), key=lambda a: a.value, default=None), tuple(
            sorted(worst.values(), key=lambda d: d.day)
        )

    def station_aqi(self, sensors: Sequence[SensorSpec], now: datetime) -> dict[str, AqiView]:
        """The hourly VN_AQI of each air-quality station among ``sensors`` that has one."""
        return self.station_aqi_all(sensors, now)[0]

    def station_aqi_all(
        self, sensors: Sequence[SensorSpec], now: datetime
    ) -> tuple[dict[str, AqiView], list[DailyAqiView]]:
        """Hourly VN_AQI per station, and each station's daily VN_AQI for yesterday and today."""
        stations = [s for s in sensors if any(m in PM for m in s.metrics)]
        if not stations:
            return {}, []
        hour = now.replace(minute=0, second=0, microsecond=0)
        since = min(hour - 12 * HOUR, start_of_vn_day(now) - 31 * HOUR)
        means = self.readings.hourly_means([s.id for s in stations], AQI_METRICS, since)
        out: dict[str, AqiView] = {}
        daily: list[DailyAqiView] = []
        for s in stations:
            series = {m: means[(s.id, m)] for m in AQI_METRICS if (s.id, m) in means}
            daily.extend(
                DailyAqiView(
                    day=d.day,
                    value=d.value,
                    category=_label(d.result),
                    colour=d.result.category.colour_hex,
                    dominant=d.result.dominant,
                    sensor=s.id,
                    partial=d.partial,
                )
                for d in station_daily(series, now)
            )
            found = station_hourly(series, hour)
            if found is None:
                continue
            out[s.id] = AqiView(
                value=found.value,
                category=_label(found),
                colour=found.category.colour_hex,
                dominant=found.dominant,
                sensor=s.id,
                hour=hour,
            )
        return out, daily


def unit_of(metric: str) -> str:
    m = METRICS.get(metric)
    return m.unit if m is not None else ""
