"""Scenarios: names, ground truth against the bundled registry, and the data that backs it."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from contract.models import Reading
from contract.registry import Registry, load_registry
from simulators.errors import UnknownScenarioError
from simulators.fleet import GatewaySimulator, fleet
from simulators.scenarios import INCIDENT_KINDS, SCENARIOS, Scenario, describe, get_scenario
from simulators.timebase import LOCAL_TZ

START = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)  # 08:00 local, a Saturday
Series = dict[tuple[str, str], list[Reading]]


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_registry()


def run(registry: Registry, scenario: Scenario, gateways: tuple[str, ...], seed: int = 1) -> Series:
    out: Series = defaultdict(list)
    for gw in gateways:
        sim = GatewaySimulator(registry, gw, seed=seed, scenario=scenario, start=scenario.start)
        for r in sim.advance(scenario.end):
            out[(r.sensor, r.metric)].append(r)
    return out


def test_the_required_scenarios_exist_and_are_described_in_both_languages() -> None:
    required = {"normal-day", "flood-evening", "gas-leak", "network-outage", "mixed-week"}
    assert required <= set(SCENARIOS)
    rows = describe()
    assert [name for name, _, _ in rows] == list(SCENARIOS)
    for _, vi, en in rows:
        assert vi and en and vi != en


def test_an_unknown_scenario_names_the_known_ones_in_vietnamese_and_english(registry: Registry) -> None:
    with pytest.raises(KeyError) as info:
        get_scenario("tsunami", start=START, registry=registry)
    assert isinstance(info.value, UnknownScenarioError)
    text = str(info.value)
    assert "Không có kịch bản" in text and "No simulation scenario" in text
    assert all(name in text for name in SCENARIOS)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_ground_truth_references_existing_sites_sensors_and_gateways(registry: Registry, name: str) -> None:
    sc = get_scenario(name, start=START, registry=registry)
    assert sc.name == name and sc.start == START
    for inc in sc.expected:
        assert inc.kind in INCIDENT_KINDS
        assert inc.site in registry.sites
        assert START <= inc.onset < sc.end
        assert inc.end is None or inc.onset <= inc.end <= sc.end
        for sensor in inc.sensors:
            assert registry.sensors[sensor].site == inc.site
            assert registry.sensors[sensor].gateway in inc.gateways
        for gw in inc.gateways:
            assert registry.site_of(gw) == inc.site
        assert inc.note


def test_scenarios_place_events_relative_to_any_start(registry: Registry) -> None:
    for start in (START, START + timedelta(days=40, hours=13, minutes=7)):
        flood = get_scenario("flood-evening", start=start, registry=registry)
        onset = flood.expected[0].onset.astimezone(LOCAL_TZ)
        assert 18 <= onset.hour <= 20  # an evening storm, whatever the start
        week = get_scenario("mixed-week", start=start, registry=registry)
        assert week.duration_s == 7 * 86400
        assert len({i.kind for i in week.expected}) >= 6


@pytest.fixture(scope="module")
def flood(registry: Registry) -> tuple[Scenario, Series]:
    sc = get_scenario("flood-evening", start=START, registry=registry)
    return sc, run(registry, sc, ("tn-gw-02", "qt-gw-02"))


def test_flood_depth_follows_the_rain(flood: tuple[Scenario, Series]) -> None:
    _, data = flood
    rain = data[("tn-rain-01", "rain_mm_h")]
    storm_start = next(r.ts for r in rain if r.value > 0)
    storm_end = max(r.ts for r in rain if r.value > 0)
    peak_rain = max(rain, key=lambda r: r.value)
    assert peak_rain.value > 50  # torrential, docs/domain-facts.md §3.1
    for sensor in ("tn-flood-01", "tn-flood-02", "tn-flood-03"):
        depth = data[(sensor, "water_level_cm")]
        assert max(r.value for r in depth if r.ts < storm_start) < 2  # dry before the rain
        after_peak = [r.value for r in depth if peak_rain.ts < r.ts <= peak_rain.ts + timedelta(hours=1)]
        assert max(after_peak) > 25
        values = [r.value for r in depth]
        assert max(b - a for a, b in zip(values, values[10:], strict=False)) > 5  # > 5 cm in 10 min
        # Once the rain stops, drains and pumps pull the water down (docs/domain-facts.md §3.4).
        at_stop = next(r.value for r in depth if r.ts >= storm_end)
        two_hours_on = next(r.value for r in depth if r.ts >= storm_end + timedelta(hours=2))
        assert two_hours_on < at_stop - 10
        assert depth[-1].value < 10
    freeboard = data[("tn-drain-01", "drain_freeboard_cm")]
    assert min(r.value for r in freeboard) < 20
    assert max(r.value for r in data[("tn-drain-01", "pump_on")]) == 1.0
    # The edge of the cell over Quang Trung: a shower, no flooding.
    assert max(r.value for r in data[("qt-flood-01", "water_level_cm")]) < 10


def test_flood_ground_truth_matches_the_data_for_every_seed(registry: Registry,
                                                            flood: tuple[Scenario, Series]) -> None:
    sc, _ = flood
    (incident,) = sc.expected
    assert incident.kind == "flooding" and incident.site == "thong-nhat"
    assert {"tn-flood-01", "tn-flood-02", "tn-flood-03", "tn-rain-01"} <= incident.sensors
    for seed in (1, 2, 3):
        data = run(registry, sc, ("tn-gw-02",), seed=seed)
        first = min(
            next(r.ts for r in data[(s, "water_level_cm")] if r.value >= 20)
            for s in ("tn-flood-01", "tn-flood-02", "tn-flood-03")
        )
        assert abs((first - incident.onset).total_seconds()) <= 120
        assert incident.end is not None
        late = [r.value for s in ("tn-flood-01", "tn-flood-02", "tn-flood-03")
                for r in data[(s, "water_level_cm")] if r.ts >= incident.end + timedelta(minutes=5)]
        assert late and max(late) < 10


def test_gas_leak_rises_above_alarm_levels_then_the_fire_detector_heats(registry: Registry) -> None:
    sc = get_scenario("gas-leak", start=START, registry=registry)
    (incident,) = sc.expected
    assert (incident.kind, incident.site) == ("fire_risk", "an-xa")
    assert incident.sensors == {"ax-gas-01", "ax-gas-02", "ax-fire-01"}
    data = run(registry, sc, ("ax-gw-02",))
    g1, g2 = data[("ax-gas-01", "gas_lel")], data[("ax-gas-02", "gas_lel")]
    assert max(r.value for r in g1) > 40 and max(r.value for r in g2) > 20
    first_gas = next(r.ts for r in g1 if r.value >= 10)
    assert abs((first_gas - incident.onset).total_seconds()) <= 60
    hot = next(r.ts for r in data[("ax-fire-01", "fire_temp_c")] if r.value >= 60)
    smoke = next(r.ts for r in data[("ax-fire-01", "smoke_pct")] if r.value >= 5)
    assert first_gas < hot and first_gas < smoke
    assert max(r.value for r in data[("ax-fire-02", "fire_temp_c")]) < 45  # the other shed stays cool
    assert g1[-1].value < 5


def test_network_outage_takes_two_quang_trung_gateways_offline_for_two_hours(registry: Registry) -> None:
    sc = get_scenario("network-outage", start=START, registry=registry)
    (incident,) = sc.expected
    assert (incident.kind, incident.site) == ("area_outage", "quang-trung")
    assert incident.gateways == {"qt-gw-01", "qt-gw-02"}
    assert incident.end is not None and incident.end - incident.onset == timedelta(hours=2)
    sims = fleet(registry, scenario=sc, start=sc.start)
    mid = incident.onset + timedelta(hours=1)
    assert not sims["qt-gw-01"].link_up(mid) and not sims["qt-gw-02"].link_up(mid)
    assert sims["qt-gw-03"].link_up(mid) and sims["tn-gw-01"].link_up(mid)
    assert sims["qt-gw-01"].link_up(incident.onset - timedelta(seconds=1))
    assert sims["qt-gw-01"].link_up(incident.end)
    during = [r for r in sims["qt-gw-02"].advance(sc.end) if incident.onset <= r.ts < incident.end]
    assert len({r.ts for r in during}) == 120  # still measured and stamped, minute by minute


def test_a_normal_day_crosses_no_threshold(registry: Registry) -> None:
    sc = get_scenario("normal-day", start=START, registry=registry)
    assert sc.expected == ()
    data: Series = defaultdict(list)
    for sim in fleet(registry, seed=9, scenario=sc, start=sc.start).values():
        for r in sim.advance(sc.end):
            data[(r.sensor, r.metric)].append(r)
    limits = {"special": (55.0, 45.0), "normal": (70.0, 55.0)}  # QCVN 26:2010, docs/domain-facts.md §2.2
    for (sensor, metric), rs in data.items():
        values = [r.value for r in rs]
        if metric == "pm25":
            assert statistics.fmean(values) < 45  # QCVN 05:2023 24 h (45 from 2026)
        elif metric == "noise_laeq":
            zone = str(registry.sensors[sensor].spec.attrs.get("noise_zone", "normal"))
            hourly: dict[int, list[float]] = defaultdict(list)
            for r in rs:
                hourly[r.ts.astimezone(LOCAL_TZ).hour].append(r.value)
            for hour, levels in hourly.items():
                leq = 10 * math.log10(statistics.fmean(10 ** (v / 10) for v in levels))
                day_limit, night_limit = limits[zone]
                assert leq < (day_limit if 6 <= hour < 21 else night_limit) - 1, (sensor, hour, leq)
        elif metric == "water_level_cm":
            assert max(values) < 10
        elif metric == "drain_freeboard_cm":
            assert min(values) > 50
        elif metric == "gas_lel":
            assert max(values) < 10
        elif metric == "fire_temp_c":
            assert max(values) < 50
        elif metric == "bin_fill_pct":
            assert max(values) < 80
        elif metric == "ww_cod":
            assert max(values) < 135  # QCVN 40 column B × Kq 0.9 × Kf 1.0
        elif metric == "stack_so2":
            assert max(values) < 500  # QCVN 19 column B
        elif metric == "lamp_voltage_v":
            assert min(values) > 198 and max(values) < 242
        elif metric == "cabinet_door_open":
            assert max(values) == 0.0


def test_mixed_week_lists_its_incidents_and_the_data_shows_them(registry: Registry) -> None:
    sc = get_scenario("mixed-week", start=START, registry=registry)
    kinds = {i.kind: i for i in sc.expected}
    assert {"flooding", "discharge_breach", "area_outage", "lighting_fault", "gas_leak",
            "bin_full", "sensor_fault"} <= set(kinds)
    assert len(sc.expected) == 8
    assert [i.onset for i in sc.expected] == sorted(i.onset for i in sc.expected)
    data = run(registry, sc, ("ax-gw-01", "tn-gw-03", "qt-gw-01"))

    breach, bypass = [i for i in sc.expected if i.kind == "discharge_breach"]
    assert "Bypass" in bypass.note and bypass.end is not None
    flows = {(r.metric, r.ts): r.value for m in ("ww_flow_in_m3h", "ww_flow_out_m3h")
             for r in data[("ax-ww-01", m)]}
    during = [flows[("ww_flow_out_m3h", ts)] / flows[("ww_flow_in_m3h", ts)]
              for (m, ts) in flows
              if m == "ww_flow_in_m3h" and bypass.onset + timedelta(minutes=5) <= ts < bypass.end]
    before = [flows[("ww_flow_out_m3h", ts)] / flows[("ww_flow_in_m3h", ts)]
              for (m, ts) in flows if m == "ww_flow_in_m3h" and ts < bypass.onset]
    assert during and min(during) > 1.5    # out well above in while the valve is open
    assert before and max(before) < 1.02   # out ≈ 0.97 x in otherwise
    assert breach.end is not None
    cod = [r.value for r in data[("ax-ww-01", "ww_cod")]
           if breach.onset + timedelta(minutes=30) <= r.ts <= breach.end - timedelta(minutes=30)]
    assert cod and min(cod) > 135

    lamp = kinds["lighting_fault"]
    assert lamp.sensors == {"tn-lamp-07"} and lamp.end is not None
    dark = [r for r in data[("tn-lamp-07", "lamp_power_w")] if lamp.onset < r.ts < lamp.end]
    assert dark and all(r.value == 0.0 for r in dark)
    lit = [r.value for r in data[("tn-lamp-06", "lamp_power_w")] if lamp.onset < r.ts < lamp.end]
    assert statistics.fmean(lit) > 50  # its neighbour burns as scheduled

    full = kinds["bin_full"]
    fill = data[(next(iter(full.sensors)), "bin_fill_pct")]
    assert next(r.ts for r in fill if r.ts > full.onset - timedelta(hours=2) and r.value >= 80) - full.onset \
        < timedelta(minutes=15)

    stuck = kinds["sensor_fault"]
    assert stuck.sensors == {"tn-aq-02"}
