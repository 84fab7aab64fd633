"""Building blocks of scenarios: each returns its events and the incident they should cause.

Ground truth is computed from the same deterministic physics the sensors use (water
balance, leak curves, bin fill, lamp schedule), never from a seeded run, so it holds for
every seed; instrument noise moves a threshold crossing by a minute or so at most.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from contract.registry import Registry, SensorRef, SiteSpec
from simulators.errors import ScenarioError
from simulators.events import (
    AirEpisode,
    Event,
    Fire,
    GasLeak,
    LampFault,
    MissedCollection,
    ProcessUpset,
    RainEvent,
)
from simulators.faults import LinkOutage, StuckValue
from simulators.models.gas_detector import BASELINE_LEL, reading_sd_lel
from simulators.models.shifts import load as shift_load
from simulators.models.street_light import scheduled_level, switch_on_time
from simulators.models.waste_bin import collection_time, fill_pct
from simulators.models.wastewater import OUT_OVER_IN, inflow_m3h, normal_cod_mg_l
from simulators.scenarios.scenario import ExpectedIncident
from simulators.timebase import DAY_S, epoch, local_day, to_datetime
from simulators.world import World

Block = tuple[tuple[Event, ...], ExpectedIncident]

# Levels the ground truth is stated against: the first warning level of the ops center's
# default rules (docs/domain-facts.md §3.3, §2.3; QCVN 40:2011 column B). Used here only to say *when*
# a condition starts and clears; the ops center owns the rules and their hold times.
FLOOD_ONSET_CM = 20.0  # §3.3 "ngập vừa": motorbikes stall
FLOOD_CLEAR_CM = 10.0  # §3.3 below 10 cm is ponding
GAS_ONSET_LEL = 10.0  # a detector's low alarm (10 % LEL; high alarm 20–40 %)
GAS_CLEAR_LEL = 7.0
# A gas onset is when a detector reads over the alarm beyond its noise: its mean reading at
# least this many standard deviations over GAS_ONSET_LEL (one-sided 97.7 %).
GAS_SURE_SD = 2.0
BIN_FULL_PCT = 80.0
COD_LIMIT_MG_L = {"A": 75.0, "B": 150.0}  # QCVN 40:2011 (§2.3), × Kq × Kf
BYPASS_MARGIN = 0.10  # outflow above inflow by more than this: the ops center's ww-bypass rule


def need_site(registry: Registry, site: str) -> SiteSpec:
    spec = registry.sites.get(site)
    if spec is None:
        raise ScenarioError(
            f"Sổ đăng ký không có địa bàn {site!r} mà kịch bản cần / "
            f"the registry has no site {site!r}, which the scenario needs"
        )
    return spec


def sensors_of(registry: Registry, site: str, kind: str, **attrs: str) -> list[SensorRef]:
    """Sensors of ``kind`` at ``site`` whose attrs match, sorted by id."""
    need_site(registry, site)
    found = [
        ref for ref in registry.sensors.values()
        if ref.site == site and ref.spec.kind == kind
        and all(ref.spec.attrs.get(k) == v for k, v in attrs.items())
    ]
    return sorted(found, key=lambda r: r.id)


def need(refs: list[SensorRef], what: str) -> list[SensorRef]:
    if not refs:
        raise ScenarioError(f"Sổ đăng ký thiếu {what} / the registry lacks {what}")
    return refs


def sensor(registry: Registry, sensor_id: str) -> SensorRef:
    ref = registry.sensors.get(sensor_id)
    if ref is None:
        raise ScenarioError(
            f"Sổ đăng ký không có cảm biến {sensor_id!r} / the registry has no sensor {sensor_id!r}"
        )
    return ref


def gateways_of(refs: Iterable[SensorRef]) -> frozenset[str]:
    return frozenset(r.gateway for r in refs)


def _first(times: Iterable[float], cond: Callable[[float], bool]) -> float | None:
    return next((t for t in times if cond(t)), None)


def _grid(start: float, end: float, step_s: int) -> range:
    first = math.ceil(start / step_s) * step_s
    return range(int(first), int(end) + 1, step_s)


def calm_air(registry: Registry, start: datetime, end: datetime) -> tuple[AirEpisode, ...]:
    """Moderate PM2.5 everywhere (daily mean 22 µg/m³ in wards, 26 in clusters).

    Keeps hourly PM2.5 under ~45 and the 24 h mean far under QCVN 05:2023's 50 (45 from
    2026), so a scenario raises no air-quality incident it does not list (docs/domain-facts.md §2.1).
    It runs a day past ``end``: the last reading (ts = end) and a demo that keeps running
    after the scenario stay calm instead of jumping to the season's climatology.
    """
    end = end + timedelta(days=1)
    wards = frozenset(s.id for s in registry.spec.sites if s.kind == "ward")
    clusters = frozenset(s.id for s in registry.spec.sites if s.kind != "ward")
    out = []
    if wards:
        out.append(AirEpisode(wards, start, end, 22.0))
    if clusters:
        out.append(AirEpisode(clusters, start, end, 26.0))
    return tuple(out)


def storm(registry: Registry, site: str, at: datetime, *, total_mm: float = 70.0,
          duration_s: float = 7200.0, elsewhere_mm: float = 5.0) -> Block:
    """A convective storm over ``site`` (docs/domain-facts.md §3.1: 50–100 mm in 1–3 h floods Delta streets).

    Other sites get a light shower from the edge of the cell: a few mm, under 10 mm/h, so
    no heavy-rain or flood alert there.
    """
    floods = need(sensors_of(registry, site, "flood_depth"),
                  f"cảm biến ngập tại {site} / flood sensors at {site}")
    end = at + timedelta(seconds=duration_s)
    events: list[Event] = [RainEvent(site, at, end, total_mm)]
    for other in registry.spec.sites:
        if other.id != site and elsewhere_mm > 0:
            edge = timedelta(minutes=10)
            events.append(RainEvent(other.id, at + edge, end - edge, elsewhere_mm))
    world = World(registry, events, start=epoch(at))
    streets = {r.id: world.street(r.id) for r in floods}
    minutes = _grid(epoch(at), epoch(at) + 12 * 3600, 60)
    onset = _first(minutes, lambda t: any(s.depth_at(t) >= FLOOD_ONSET_CM for s in streets.values()))
    if onset is None:
        raise ScenarioError(f"Trận mưa không gây ngập tại {site} / the storm does not flood {site}")
    clear = _first(_grid(onset, onset + 24 * 3600, 60),
                   lambda t: all(s.depth_at(t) < FLOOD_CLEAR_CM for s in streets.values()))
    flooded = [r for r in floods if max(streets[r.id].depth_at(t) for t in minutes) >= FLOOD_ONSET_CM]
    peak = max(max(s.depth_at(t) for t in minutes) for s in streets.values())
    members = [*flooded, *sensors_of(registry, site, "rain_gauge"),
               *sensors_of(registry, site, "drainage_level")]
    note = (
        f"Mưa {total_mm:g} mm trong {duration_s / 3600:g} giờ; ngập ≥ {FLOOD_ONSET_CM:g} cm từ lúc bắt đầu, "
        f"sâu nhất {peak:.0f} cm; kết thúc khi mọi điểm < {FLOOD_CLEAR_CM:g} cm. / "
        f"{total_mm:g} mm of rain in {duration_s / 3600:g} h; depth ≥ {FLOOD_ONSET_CM:g} cm from onset, "
        f"peak {peak:.0f} cm; ends when every point is < {FLOOD_CLEAR_CM:g} cm."
    )
    incident = ExpectedIncident(
        site=site, kind="flooding", onset=to_datetime(onset),
        end=None if clear is None else to_datetime(clear),
        sensors=frozenset(r.id for r in members), gateways=gateways_of(members), note=note,
    )
    return tuple(events), incident


def gas_leak(registry: Registry, site: str, factory: str, at: datetime, *,
             peaks_lel: tuple[float, ...] = (55.0, 35.0), leak_s: float = 3000.0,
             fire_after_s: float | None = 900.0, fire_s: float = 1800.0) -> Block:
    """A leak at ``factory``'s gas detectors; with ``fire_after_s``, it ignites by its first fire detector."""
    gas = need(sensors_of(registry, site, "gas_detector", factory=factory),
               f"đầu dò khí của {factory} / gas detectors of {factory}")[: len(peaks_lel)]
    leak = GasLeak(tuple((r.id, p) for r, p in zip(gas, peaks_lel, strict=False)), at,
                   at + timedelta(seconds=leak_s))
    events: list[Event] = [leak]
    members = list(gas)
    fire: Fire | None = None
    if fire_after_s is not None:
        detector = need(sensors_of(registry, site, "fire_detector", factory=factory),
                        f"đầu báo cháy của {factory} / fire detectors of {factory}")[0]
        ignition = at + timedelta(seconds=fire_after_s)
        fire = Fire(((detector.id, 1.0),), ignition, ignition + timedelta(seconds=fire_s))
        events.append(fire)
        members.append(detector)
    step = min(r.spec.interval_s for r in gas)
    t0 = epoch(at)
    onset = _first(_grid(t0, t0 + 6 * 3600, step),
                   lambda t: any(surely_alarms(leak.lel(r.id, t)) for r in gas))
    if onset is None:
        raise ScenarioError("Rò rỉ quá nhỏ để báo động / the leak is too small to alarm")

    def cleared(t: float) -> bool:
        fire_cold = fire is None or all(fire.level(s, t) < 0.25 for s, _ in fire.severity)
        return fire_cold and all(leak.lel(r.id, t) < GAS_CLEAR_LEL for r in gas)

    last = max(epoch(e.end) for e in events if isinstance(e, GasLeak | Fire))
    clear = _first(_grid(last, last + 6 * 3600, step), cleared)
    kind = "gas_leak" if fire is None else "fire_risk"
    detail_vi = detail_en = ""
    if fire is not None and fire_after_s is not None:
        near, minutes = fire.severity[0][0], fire_after_s / 60
        detail_vi = f"; bắt lửa sau {minutes:g} phút gần {near}"
        detail_en = f"; ignites after {minutes:g} min near {near}"
    note = (
        f"Rò rỉ khí tại {factory}, đỉnh {max(peaks_lel):g} %LEL; mở khi một đầu dò chắc chắn đọc "
        f"≥ {GAS_ONSET_LEL:g} %LEL (vượt cả nhiễu đo){detail_vi}. / Gas leak at {factory}, peak "
        f"{max(peaks_lel):g} %LEL; opens when a detector surely reads ≥ {GAS_ONSET_LEL:g} %LEL "
        f"(beyond its noise){detail_en}."
    )
    incident = ExpectedIncident(
        site=site, kind=kind, onset=to_datetime(onset), end=None if clear is None else to_datetime(clear),
        sensors=frozenset(r.id for r in members), gateways=gateways_of(members), note=note,
    )
    return tuple(events), incident


def surely_alarms(leak_lel: float) -> bool:
    """A detector where the leak alone gives ``leak_lel`` reads ≥ GAS_ONSET_LEL whatever its noise
    (within GAS_SURE_SD standard deviations).

    The noise-free crossing of 10 %LEL is not what a detector can be held to: at the alarm point
    its reading scatters by ~1 %LEL (plume turbulence, correlated over a minute), so on a slow
    leak (30 %LEL peak: +0.7 %LEL a reading) a detector may show the crossing up to ~4 readings
    either side of it. Ground truth states when the gas is there beyond doubt; an earlier alarm
    on a real leak is an early detection, not a false one."""
    return BASELINE_LEL + leak_lel - GAS_SURE_SD * reading_sd_lel(leak_lel) >= GAS_ONSET_LEL


def outage(registry: Registry, gateways: Iterable[str], at: datetime, duration_s: float) -> Block:
    """Gateways lose signal; two or more of one site make an area outage."""
    gws = frozenset(gateways)
    sites = {registry.site_of(g) for g in gws}
    if None in sites or len(sites) != 1:
        raise ScenarioError(
            f"Các gateway {sorted(gws)} phải có trong sổ đăng ký và cùng một địa bàn / "
            f"gateways {sorted(gws)} must exist and belong to one site"
        )
    site = next(s for s in sites if s is not None)
    end = at + timedelta(seconds=duration_s)
    kind = "area_outage" if len(gws) > 1 else "gateway_offline"
    note = (
        f"{len(gws)} gateway mất sóng {duration_s / 3600:g} giờ; dữ liệu vẫn được ghi và gửi bù sau. / "
        f"{len(gws)} gateway(s) without signal for {duration_s / 3600:g} h; readings are kept and sent late."
    )
    return (LinkOutage(gws, at, end),), ExpectedIncident(
        site=site, kind=kind, onset=at, end=end, sensors=frozenset(), gateways=gws, note=note,
    )


def discharge_breach(registry: Registry, sensor_id: str, at: datetime, duration_s: float, *,
                     cod_mg_l: float = 220.0, tss_mg_l: float = 130.0) -> Block:
    """A biological-treatment upset at a wastewater outlet: COD and TSS over QCVN 40."""
    ref = sensor(registry, sensor_id)
    attrs = ref.spec.attrs
    column = str(attrs.get("column", "B"))
    kq, kf = float(attrs.get("kq", 1.0)), float(attrs.get("kf", 1.0))
    limit = COD_LIMIT_MG_L.get(column, COD_LIMIT_MG_L["B"]) * kq * kf
    upset = ProcessUpset(sensor_id, at, at + timedelta(seconds=duration_s),
                         (("ww_cod", cod_mg_l), ("ww_tss", tss_mg_l)))

    def cod(t: float) -> float:
        w = upset.weight(t)
        return (1.0 - w) * normal_cod_mg_l(shift_load(t)) + w * cod_mg_l

    t0, t1 = epoch(at), epoch(at) + duration_s + upset.ramp_s
    onset = _first(_grid(t0, t1, 60), lambda t: cod(t) >= limit)
    if onset is None:
        raise ScenarioError("COD không vượt ngưỡng / COD does not exceed the limit")
    clear = _first(_grid(onset, t1, 60), lambda t: cod(t) < limit)
    note = (
        f"Sự cố xử lý: COD lên {cod_mg_l:g} mg/L (ngưỡng {limit:g} = cột {column} × Kq × Kf, QCVN 40), "
        f"TSS {tss_mg_l:g} mg/L. / Treatment upset: COD to {cod_mg_l:g} mg/L (limit {limit:g} = column "
        f"{column} × Kq × Kf, QCVN 40), TSS {tss_mg_l:g} mg/L."
    )
    return (upset,), ExpectedIncident(
        site=ref.site, kind="discharge_breach", onset=to_datetime(onset),
        end=None if clear is None else to_datetime(clear),
        sensors=frozenset({sensor_id}), gateways=frozenset({ref.gateway}), note=note,
    )


def bypass(registry: Registry, sensor_id: str, at: datetime, duration_s: float, *,
           outflow_m3h: float = 150.0, margin: float = BYPASS_MARGIN) -> Block:
    """A bypass valve at a wastewater outlet opens: the outflow jumps above the inflow.

    docs/domain-facts.md §4.4: out ≈ in normally; "out > in, or out with no in" is a bypass. A valve
    opens in a minute or two (``ramp_s`` 120), unlike a biological upset. The onset is the
    first 10 s at which the noise-free outflow exceeds the noise-free inflow by ``margin``.
    """
    ref = sensor(registry, sensor_id)
    for metric in ("ww_flow_in_m3h", "ww_flow_out_m3h"):
        if metric not in ref.spec.metrics:
            raise ScenarioError(f"{sensor_id} không đo {metric} / {sensor_id} does not report {metric}")
    design = float(ref.spec.attrs.get("design_m3h", 120.0))
    upset = ProcessUpset(sensor_id, at, at + timedelta(seconds=duration_s),
                         (("ww_flow_out_m3h", outflow_m3h),), ramp_s=120.0)

    def excess(t: float) -> float:
        inflow = inflow_m3h(design, shift_load(t))
        w = upset.weight(t)
        return ((1.0 - w) * OUT_OVER_IN * inflow + w * outflow_m3h) / inflow - 1.0

    t0, t1 = epoch(at), epoch(at) + duration_s + upset.ramp_s
    onset = _first(_grid(t0, t1, 10), lambda t: excess(t) >= margin)
    if onset is None:
        raise ScenarioError("Lưu lượng ra không vượt lưu lượng vào / outflow does not exceed inflow")
    clear = _first(_grid(onset, t1 + 60, 10), lambda t: excess(t) < margin)
    note = (
        f"Mở van xả tắt: lưu lượng ra {outflow_m3h:g} m³/h, vượt lưu lượng vào quá {margin:.0%}; "
        f"kết thúc khi đóng van. / Bypass valve open: outflow {outflow_m3h:g} m³/h, above the inflow "
        f"by more than {margin:.0%}; ends when the valve closes."
    )
    return (upset,), ExpectedIncident(
        site=ref.site, kind="discharge_breach", onset=to_datetime(onset),
        end=None if clear is None else to_datetime(clear),
        sensors=frozenset({sensor_id}), gateways=frozenset({ref.gateway}), note=note,
    )


def lamp_out(registry: Registry, sensor_id: str, start: datetime, end: datetime) -> Block:
    """A lamp fails at ``start`` and is repaired at ``end``; it shows once the schedule turns it on."""
    ref = sensor(registry, sensor_id)
    loc = ref.spec.location or registry.sites[ref.site].location
    s = epoch(start)
    on_at = s if scheduled_level(s, loc.lat, loc.lon) > 0 else switch_on_time(s, loc.lat, loc.lon)
    if on_at < s:  # already past today's switch-on in the morning hours: tomorrow evening
        on_at = switch_on_time(s + DAY_S, loc.lat, loc.lon)
    if on_at >= epoch(end):
        raise ScenarioError("Đèn được sửa trước khi bật / the lamp is repaired before it is due on")
    note = (
        "Bóng đèn hỏng: công suất ≈ 0 khi theo lịch phải sáng; kết thúc khi sửa xong. / "
        "Lamp out: power ≈ 0 while scheduled on; ends when repaired."
    )
    return (LampFault(frozenset({sensor_id}), "lamp_out", start, end),), ExpectedIncident(
        site=ref.site, kind="lighting_fault", onset=to_datetime(math.ceil(on_at)), end=end,
        sensors=frozenset({sensor_id}), gateways=frozenset({ref.gateway}), note=note,
    )


def missed_collection(registry: Registry, sensor_id: str, day_of: datetime) -> Block:
    """The evening collection of ``day_of``'s local day is skipped: the bin fills past 80 % to 100 %."""
    ref = sensor(registry, sensor_id)
    day = local_day(epoch(day_of))
    tc = collection_time(sensor_id, day)
    window = (tc - 3600.0, tc + 3600.0)
    event = MissedCollection(frozenset({sensor_id}), to_datetime(window[0]), to_datetime(window[1]))
    onset = _first(_grid(window[0], window[0] + 2 * DAY_S, 60),
                   lambda t: fill_pct(sensor_id, t, [window]) >= BIN_FULL_PCT)
    if onset is None:
        raise ScenarioError("Thùng rác không đầy / the bin does not fill up")
    emptied = collection_time(sensor_id, local_day(onset))
    if emptied <= onset:
        emptied = collection_time(sensor_id, local_day(onset) + 1)
    note = (
        f"Bỏ lỡ một lượt thu gom: thùng ≥ {BIN_FULL_PCT:g} % đến lượt thu gom sau. / "
        f"One collection missed: bin ≥ {BIN_FULL_PCT:g} % until the next collection."
    )
    return (event,), ExpectedIncident(
        site=ref.site, kind="bin_full", onset=to_datetime(onset), end=to_datetime(math.ceil(emptied)),
        sensors=frozenset({sensor_id}), gateways=frozenset({ref.gateway}), note=note,
    )


def stuck_sensor(registry: Registry, sensor_id: str, metric: str, start: datetime, end: datetime) -> Block:
    """A sensor freezes on one value (a hung ADC, a frozen firmware loop)."""
    ref = sensor(registry, sensor_id)
    if metric not in ref.spec.metrics:
        raise ScenarioError(f"{sensor_id} không đo {metric} / {sensor_id} does not report {metric}")
    note = (
        f"{metric} của {sensor_id} đứng yên một giá trị; chất lượng vẫn báo 'good'. / "
        f"{sensor_id} repeats one {metric} value; quality still says 'good'."
    )
    return (StuckValue(sensor_id, start, end, frozenset({metric})),), ExpectedIncident(
        site=ref.site, kind="sensor_fault", onset=start, end=end,
        sensors=frozenset({sensor_id}), gateways=frozenset({ref.gateway}), note=note,
    )
