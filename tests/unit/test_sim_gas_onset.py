"""Gas-leak ground truth: its onset is a time the simulated detector can be held to."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from contract.registry import Registry, load_registry
from simulators.events import GasLeak
from simulators.fleet import GatewaySimulator
from simulators.models.gas_detector import BASELINE_LEL, reading_sd_lel
from simulators.scenarios.blocks import GAS_ONSET_LEL, GAS_SURE_SD, gas_leak, surely_alarms
from simulators.scenarios.scenario import Scenario
from simulators.timebase import epoch

AT = datetime(2026, 11, 21, 3, 0, tzinfo=UTC)  # 10:00 local, as mixed-week's leak
INTERVAL_S = 10.0  # the co-khi-2 detectors' interval_s


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_registry()


def _leak(registry: Registry, peak: float) -> Scenario:
    events, incident = gas_leak(registry, "an-xa", "co-khi-2", AT, peaks_lel=(peak,), leak_s=2400.0,
                                fire_after_s=None)
    start = AT - timedelta(minutes=10)
    return Scenario("gas-test", start, 3600.0, "thử", "test", events=events, expected=(incident,))


def test_a_detector_surely_alarms_only_once_the_leak_clears_its_noise() -> None:
    # The noise-free crossing (mean reading = 10 %LEL) is a coin toss, not an onset.
    assert not surely_alarms(GAS_ONSET_LEL - BASELINE_LEL)
    need = GAS_ONSET_LEL - BASELINE_LEL + GAS_SURE_SD * reading_sd_lel(12.0)
    assert surely_alarms(need + 0.05)
    assert not surely_alarms(need - 0.3)
    assert 11.0 < need < 12.5  # ~2 %LEL over the alarm: 2 sd of a ~1.2 %LEL scatter


def test_the_onset_is_after_the_noise_free_crossing_and_on_the_reading_grid(registry: Registry) -> None:
    sc = _leak(registry, 30.0)
    (incident,) = sc.expected
    (leak,) = [e for e in sc.events if isinstance(e, GasLeak)]
    onset = epoch(incident.onset)
    crossing = epoch(AT) - leak.rise_s * math.log(1 - (GAS_ONSET_LEL - BASELINE_LEL) / 30.0)
    assert crossing < onset <= crossing + 60
    assert onset % INTERVAL_S == 0
    assert surely_alarms(leak.lel("ax-gas-03", onset))
    assert not surely_alarms(leak.lel("ax-gas-03", onset - INTERVAL_S))


@pytest.mark.parametrize("peak", [30.0, 55.0])
def test_every_seed_reads_the_alarm_within_two_intervals_of_the_onset(
        registry: Registry, peak: float) -> None:
    """The issue #4 target (detection within 2 reporting intervals) is met by the detector
    itself: the noise-free crossing was missed by +30..+40 s on ~2 % of runs of the 30 %LEL
    leak of mixed-week, however fast the pipeline."""
    sc = _leak(registry, peak)
    (incident,) = sc.expected
    gateway = registry.sensors["ax-gas-03"].gateway
    late: list[tuple[int, float]] = []
    for seed in range(1, 301):
        sim = GatewaySimulator(registry, gateway, seed=seed, scenario=sc, start=sc.start)
        readings = sim.advance(incident.onset + timedelta(minutes=5))
        first = next(r.ts for r in readings if r.sensor == "ax-gas-03" and r.value >= GAS_ONSET_LEL)
        detect_s = (first - incident.onset).total_seconds()
        if detect_s > 2 * INTERVAL_S:
            late.append((seed, detect_s))
    assert late == []
