"""GatewaySimulator.advance() contract, determinism, speed, commands."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta

import pytest

from contract.catalog import METRICS
from contract.models import Reading
from contract.registry import Registry, RegistrySpec, load_registry
from simulators.errors import SimulatorError
from simulators.fleet import GatewaySimulator, fleet
from simulators.scenarios import get_scenario

START = datetime(2026, 11, 28, 0, 0, 30, tzinfo=UTC)  # off-grid on purpose


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_registry()


def key(r: Reading) -> tuple[str, str, datetime]:
    return (r.sensor, r.metric, r.ts)


def test_advance_returns_each_reading_once_inside_the_window_in_time_order(registry: Registry) -> None:
    for gw in ("tn-gw-01", "ax-gw-02"):
        sim = GatewaySimulator(registry, gw, start=START)
        prev, seen = START, set()
        for minutes in (1, 7, 30, 31, 95):
            until = START + timedelta(minutes=minutes, seconds=13)
            batch = sim.advance(until)
            assert batch, "every window above holds at least one grid point"
            assert [r.ts for r in batch] == sorted(r.ts for r in batch)
            for r in batch:
                assert isinstance(r, Reading)
                assert prev < r.ts <= until
                assert key(r) not in seen
                seen.add(key(r))
            prev = until
            assert sim.cursor == until


def test_readings_sit_on_each_sensors_interval_grid_with_every_declared_metric(registry: Registry) -> None:
    sim = GatewaySimulator(registry, "ax-gw-02", start=START)
    until = START + timedelta(hours=1)
    batch = sim.advance(until)
    specs = {s.id: s for s in registry.sensors_of("ax-gw-02")}
    by_sensor: dict[str, set[tuple[str, datetime]]] = {}
    for r in batch:
        spec = specs[r.sensor]
        assert r.ts.timestamp() % spec.interval_s == 0
        assert r.metric in spec.metrics
        assert r.quality == "good"
        assert math.isfinite(r.value)
        by_sensor.setdefault(r.sensor, set()).add((r.metric, r.ts))
    for sid, spec in specs.items():
        expected_ticks = math.floor(until.timestamp() / spec.interval_s) - math.floor(
            START.timestamp() / spec.interval_s
        )
        assert len(by_sensor[sid]) == expected_ticks * len(spec.metrics)


def test_splitting_a_run_into_windows_gives_the_same_readings(registry: Registry) -> None:
    scenario = get_scenario("flood-evening", start=START, registry=registry)
    one = GatewaySimulator(registry, "tn-gw-02", seed=5, scenario=scenario, start=START)
    many = GatewaySimulator(registry, "tn-gw-02", seed=5, scenario=scenario, start=START)
    end = scenario.end
    whole = one.advance(end)
    parts: list[Reading] = []
    t = START
    while t < end:
        t = min(end, t + timedelta(minutes=17, seconds=41))
        parts.extend(many.advance(t))
    assert whole == parts


def test_advance_to_the_past_or_the_same_time_returns_nothing(registry: Registry) -> None:
    sim = GatewaySimulator(registry, "tn-gw-01", start=START)
    assert sim.advance(START) == []
    assert sim.advance(START - timedelta(hours=1)) == []
    first = sim.advance(START + timedelta(minutes=5))
    assert first
    assert sim.advance(START + timedelta(minutes=5)) == []


def test_same_seed_gives_identical_readings_and_another_seed_different_ones(registry: Registry) -> None:
    until = START + timedelta(hours=2)

    def run(seed: int) -> list[Reading]:
        return [r for s in fleet(registry, seed=seed, start=START).values() for r in s.advance(until)]

    a, b, c = run(11), run(11), run(12)
    assert a == b
    assert len(a) == len(c)
    assert [key(r) for r in a] == [key(r) for r in c]
    differing = sum(x.value != y.value for x, y in zip(a, c, strict=True))
    assert differing > len(a) // 2


def test_one_simulated_hour_of_a_gateway_takes_well_under_100_ms(registry: Registry) -> None:
    best = math.inf
    for _ in range(3):
        sim = GatewaySimulator(registry, "tn-gw-01", start=START)  # 6 sensors at 60–300 s, 8-metric stations
        t0 = time.perf_counter()
        batch = sim.advance(START + timedelta(hours=1))
        best = min(best, time.perf_counter() - t0)
    assert len(batch) > 1000
    assert best < 0.05


def test_fleet_has_one_simulator_per_gateway_of_the_registry(registry: Registry) -> None:
    sims = fleet(registry, start=START)
    assert set(sims) == set(registry.gateways)
    for gw, sim in sims.items():
        assert sim.gateway == gw
        assert sim.site == registry.site_of(gw)
        assert sim.link_up(START)


def test_unknown_gateway_is_refused_in_both_languages(registry: Registry) -> None:
    with pytest.raises(SimulatorError, match=r"không có trong sổ đăng ký.*not in the registry"):
        GatewaySimulator(registry, "zz-gw-99", start=START)


def test_set_lamp_command_overrides_the_schedule_until_auto(registry: Registry) -> None:
    noon = datetime(2026, 11, 28, 5, 0, tzinfo=UTC)  # 12:00 local: lamps off by schedule
    sim = GatewaySimulator(registry, "tn-gw-03", start=noon)
    assert sim.command("set_lamp", "tn-lamp-07", {"on": True, "dim_pct": 50},
                       at=noon + timedelta(minutes=10)) == (True, "applied")
    batch = sim.advance(noon + timedelta(minutes=30))
    power = {r.ts: r.value for r in batch if r.sensor == "tn-lamp-07" and r.metric == "lamp_power_w"}
    assert power[noon + timedelta(minutes=5)] == 0.0
    assert power[noon + timedelta(minutes=15)] == pytest.approx(75.0, rel=0.05)
    others = [r.value for r in batch if r.sensor == "tn-lamp-06" and r.metric == "lamp_power_w"]
    assert others and all(v == 0.0 for v in others)
    assert sim.command("set_lamp", "tn-lamp-07", {"auto": True}, at=noon + timedelta(minutes=31))[0]
    later = sim.advance(noon + timedelta(hours=1))
    assert all(r.value == 0.0 for r in later if r.sensor == "tn-lamp-07" and r.metric == "lamp_power_w")
    assert sim.command("set_lamp", "tn-lamp-99", {"on": True}, at=noon) == (False, "unknown_sensor")
    assert sim.command("reboot", "tn-lamp-07", {}, at=noon) == (False, "unsupported_command")
    assert sim.command("set_lamp", "tn-lamp-07", {"dim_pct": 140}, at=noon) == (False, "bad_args")


def test_values_stay_inside_the_catalog_bounds_over_a_simulated_week(registry: Registry) -> None:
    # Every kind, winter without a scenario and the mixed week with its events. Reporting
    # every 15 minutes keeps the week fast; the physics steps on its own 60 s grid.
    slow = _with_interval(registry, 900)
    winter = datetime(2027, 1, 4, 17, 0, tzinfo=UTC)
    runs = [(None, winter), (get_scenario("mixed-week", start=START, registry=slow), START)]
    kinds: set[str] = set()
    for scenario, start in runs:
        for sim in fleet(slow, seed=2, scenario=scenario, start=start).values():
            for r in sim.advance(start + timedelta(days=7)):
                m = METRICS[r.metric]
                assert m.min <= r.value <= m.max, r
                if m.boolean:
                    assert r.value in (0.0, 1.0)
                kinds.add(slow.sensors[r.sensor].spec.kind)
    assert len(kinds) == 12


def _with_interval(registry: Registry, interval_s: int) -> Registry:
    data = registry.spec.model_dump()
    for site in data["sites"]:
        for gw in site["gateways"]:
            for sensor in gw["sensors"]:
                sensor["interval_s"] = interval_s
    return Registry(RegistrySpec.model_validate(data))
