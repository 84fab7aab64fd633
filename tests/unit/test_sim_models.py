"""Statistical checks of the sensor models against docs/domain-facts.md §3–§4 (seeded, no scenario)."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from contract.catalog import SENSOR_KINDS
from contract.models import Reading
from contract.registry import Registry, load_registry
from simulators.fleet import GatewaySimulator
from simulators.models import MODELS
from simulators.models.street_light import scheduled_level
from simulators.sun import sunrise_sunset
from simulators.timebase import LOCAL_TZ, epoch

WINTER = datetime(2027, 1, 3, 17, 0, tzinfo=UTC)  # local midnight, Monday 4 Jan 2027
SUMMER = datetime(2026, 7, 5, 17, 0, tzinfo=UTC)  # local midnight, Monday 6 Jul 2026
LAT, LON = 20.442, 106.167

Series = dict[tuple[str, str], list[Reading]]


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_registry()


def run(registry: Registry, gateway: str, start: datetime, days: float, seed: int = 1) -> Series:
    out: Series = defaultdict(list)
    sim = GatewaySimulator(registry, gateway, seed=seed, start=start)
    for r in sim.advance(start + timedelta(days=days)):
        out[(r.sensor, r.metric)].append(r)
    return out


def local_hour(r: Reading) -> int:
    return r.ts.astimezone(LOCAL_TZ).hour


def mean_where(rs: list[Reading], cond: Callable[[int], bool]) -> float:
    return statistics.fmean(r.value for r in rs if cond(local_hour(r)))


@pytest.fixture(scope="module")
def winter_ward(registry: Registry) -> Series:
    return run(registry, "tn-gw-01", WINTER, 5)


@pytest.fixture(scope="module")
def summer_ward(registry: Registry) -> Series:
    return run(registry, "tn-gw-01", SUMMER, 5)


def test_every_sensor_kind_of_the_catalog_has_a_model() -> None:
    assert set(MODELS) == set(SENSOR_KINDS)


def test_pm25_is_highest_in_the_morning_and_lowest_in_the_afternoon(winter_ward: Series) -> None:
    pm = winter_ward[("tn-aq-01", "pm25")]
    morning = mean_where(pm, lambda h: 6 <= h <= 8)
    afternoon = mean_where(pm, lambda h: 13 <= h <= 16)
    assert morning > 1.4 * afternoon  # §4.1 multipliers: 1.3 vs 0.7


def test_pm25_is_about_three_times_higher_in_winter_than_in_summer(
    winter_ward: Series, summer_ward: Series
) -> None:
    winter = statistics.fmean(r.value for r in winter_ward[("tn-aq-01", "pm25")])
    summer = statistics.fmean(r.value for r in summer_ward[("tn-aq-01", "pm25")])
    assert 40 <= winter <= 95  # §4.1: winter daily means 45–90
    assert 12 <= summer <= 32  # summer 15–30
    assert winter > 2.0 * summer


def test_pm10_follows_pm25_and_gases_have_their_daily_shapes(winter_ward: Series) -> None:
    pm25 = winter_ward[("tn-aq-02", "pm25")]
    pm10 = winter_ward[("tn-aq-02", "pm10")]
    ratios = [b.value / a.value for a, b in zip(pm25, pm10, strict=True)]
    assert 1.45 <= statistics.fmean(ratios) <= 1.75
    o3 = winter_ward[("tn-aq-02", "o3")]
    assert mean_where(o3, lambda h: 13 <= h <= 15) > 1.8 * mean_where(o3, lambda h: h <= 4)
    no2 = winter_ward[("tn-aq-02", "no2")]
    assert mean_where(no2, lambda h: 7 <= h <= 8) > 2.0 * mean_where(no2, lambda h: 2 <= h <= 4)
    co = [r.value for r in winter_ward[("tn-aq-02", "co")]]
    assert 500 <= statistics.fmean(co) <= 2500


def test_noise_is_quieter_at_night_and_in_the_special_zone(winter_ward: Series) -> None:
    street = winter_ward[("tn-noise-02", "noise_laeq")]  # normal zone, main street
    school = winter_ward[("tn-noise-01", "noise_laeq")]  # special zone, school gate
    night = mean_where(street, lambda h: 1 <= h <= 4)
    day = mean_where(street, lambda h: 7 <= h <= 18)
    assert day - night > 10
    assert mean_where(school, lambda h: 7 <= h <= 18) < day - 8
    lamax = winter_ward[("tn-noise-02", "noise_lamax")]
    assert all(mx.value >= eq.value for mx, eq in zip(lamax, street, strict=True))
    horns = [r.value for r in lamax if 7 <= local_hour(r) <= 18 and r.value >= 85]
    assert len(horns) > 100  # §4.2: horn spikes of 85–95 dB


def test_lamps_are_on_at_night_off_at_noon_and_dimmed_after_23(registry: Registry) -> None:
    series = run(registry, "qt-gw-03", WINTER, 2)
    rated = {s.id: float(s.attrs["rated_w"]) for s in registry.sensors_of("qt-gw-03")}
    for sensor, w in rated.items():
        for r in series[(sensor, "lamp_power_w")]:
            h = r.ts.astimezone(LOCAL_TZ)
            hour = h.hour + h.minute / 60
            if 10 <= hour <= 15:
                assert r.value == 0.0
            elif 19 <= hour < 22.9:
                assert r.value == pytest.approx(w, rel=0.05)
            elif hour >= 23 or hour < 5:
                assert r.value == pytest.approx(0.6 * w, rel=0.05)
        volts = [r.value for r in series[(sensor, "lamp_voltage_v")]]
        assert all(198 <= v <= 242 for v in volts)  # 220 V ± 10 %
        current = [r.value for r in series[(sensor, "lamp_current_a")] if r.value > 0]
        assert max(current) < 0.8


@pytest.mark.parametrize(
    ("day", "hours"),
    [(datetime(2026, 12, 21, 5, tzinfo=UTC), 12.5), (datetime(2026, 6, 21, 5, tzinfo=UTC), 10.5)],
)
def test_lighting_hours_follow_the_season_at_20_degrees_north(day: datetime, hours: float) -> None:
    t0 = epoch(day)  # local noon
    minutes_on = sum(scheduled_level(t0 + 60 * i, LAT, LON) > 0 for i in range(24 * 60))
    assert minutes_on / 60 == pytest.approx(hours, abs=0.5)  # §4.3


def test_sunrise_and_sunset_in_december_match_nam_dinh() -> None:
    rise, sset = sunrise_sunset(epoch(datetime(2026, 12, 15, 5, tzinfo=UTC)), LAT, LON)
    local = [datetime.fromtimestamp(t, LOCAL_TZ) for t in (rise, sset)]
    assert (local[0].hour, local[0].minute) in {(6, m) for m in range(18, 29)}
    assert (local[1].hour, local[1].minute) in {(17, m) for m in range(12, 23)}


def test_bins_fill_by_day_and_are_emptied_in_the_evening(registry: Registry) -> None:
    series = run(registry, "qt-gw-01", WINTER, 3)
    for sensor in ("qt-bin-01", "qt-bin-02", "qt-bin-03"):
        fill = series[(sensor, "bin_fill_pct")]
        assert max(r.value for r in fill) < 80  # a normal day never looks full
        by_day_hour = {(r.ts.astimezone(LOCAL_TZ).day, local_hour(r)): r.value for r in fill}
        day = WINTER.astimezone(LOCAL_TZ).day + 1
        assert by_day_hour[(day, 17)] > by_day_hour[(day, 8)] + 20  # fills during the day
        assert by_day_hour[(day, 21)] < 15  # emptied at the ~19:00 collection


def test_industrial_sensors_follow_shifts_and_safety_sensors_stay_quiet(registry: Registry) -> None:
    plant = run(registry, "ax-gw-01", WINTER, 2)
    flow = plant[("ax-ww-01", "ww_flow_in_m3h")]
    assert mean_where(flow, lambda h: 9 <= h <= 15) > 2.0 * mean_where(flow, lambda h: 0 <= h <= 4)
    cod = [r.value for r in plant[("ax-ww-01", "ww_cod")]]
    assert min(cod) >= 40 and max(cod) < 135  # §4.4, under column B × Kq × Kf
    ph = [r.value for r in plant[("ax-ww-01", "ww_ph")]]
    assert min(ph) >= 6.5 and max(ph) <= 8.0
    mill = run(registry, "ax-gw-02", WINTER, 1)
    stack = mill[("ax-stack-01", "stack_so2")]
    assert mean_where(stack, lambda h: 9 <= h <= 15) > mean_where(stack, lambda h: 0 <= h <= 4)
    assert max(r.value for r in stack) < 500
    power = mill[("ax-pwr-02", "power_kw")]
    assert mean_where(power, lambda h: 9 <= h <= 15) > 2.0 * mean_where(power, lambda h: 0 <= h <= 4)
    gas = [r.value for r in mill[("ax-gas-01", "gas_lel")]]
    assert statistics.fmean(gas) < 1.5 and max(gas) < 5  # ~0–2 %LEL
    fire = [r.value for r in mill[("ax-fire-01", "fire_temp_c")]]
    assert min(fire) > 10 and max(fire) < 40
    assert max(r.value for r in mill[("ax-fire-01", "smoke_pct")]) < 1


def test_without_rain_the_streets_are_dry_and_the_channel_low(registry: Registry) -> None:
    series = run(registry, "tn-gw-02", SUMMER, 2)
    assert all(r.value == 0.0 for r in series[("tn-rain-01", "rain_mm_h")])
    for sensor in ("tn-flood-01", "tn-flood-02", "tn-flood-03"):
        assert max(r.value for r in series[(sensor, "water_level_cm")]) < 2  # ponding noise only
    freeboard = [r.value for r in series[("tn-drain-01", "drain_freeboard_cm")]]
    assert min(freeboard) > 60 and max(freeboard) < 120  # §3.4: 0.6–1.2 m below the bank
    assert all(r.value == 0.0 for r in series[("tn-drain-01", "pump_on")])
