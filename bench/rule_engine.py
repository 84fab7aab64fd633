"""Micro-benchmark of the rule engine (no I/O; a benchmark, not a test).

``measure_rules(n)`` feeds ``n`` readings of the demo registry's sensors with the default
rules and returns readings per second on this core. ``per_series`` readings of each
(sensor, metric) go in each gateway batch: 1 is the live case (one reading per series
per flush), larger values are a gateway draining its backlog.
"""

from __future__ import annotations

import math
import random
import time
from datetime import UTC, datetime, timedelta

from contract.catalog import METRICS
from contract.registry import Registry, load_registry
from ops_center.domain.engine import Reading, RuleEngine
from ops_center.domain.rules import RuleSet

# Quiet, plausible values (docs/domain-facts.md §4 orders of magnitude): the common "nothing happens" path.
_TYPICAL = {
    "pm25": 35.0, "pm10": 60.0, "no2": 40.0, "co": 1200.0, "o3": 60.0, "so2": 15.0, "air_temp_c": 28.0,
    "humidity_pct": 75.0, "noise_laeq": 52.0, "noise_lamax": 70.0, "rain_mm_h": 0.0, "water_level_cm": 0.0,
    "drain_freeboard_cm": 90.0, "pump_on": 0.0, "lamp_power_w": 120.0, "lamp_voltage_v": 221.0,
    "lamp_current_a": 0.6, "lamp_temp_c": 50.0, "cabinet_door_open": 0.0, "bin_fill_pct": 40.0, "ww_ph": 7.2,
    "ww_temp_c": 30.0, "ww_cod": 60.0, "ww_tss": 30.0, "ww_nh4": 3.0, "ww_flow_in_m3h": 40.0,
    "ww_flow_out_m3h": 38.0, "stack_dust": 80.0, "stack_so2": 250.0, "stack_nox": 300.0, "stack_co": 150.0,
    "stack_o2_pct": 9.0, "stack_temp_c": 150.0, "stack_flow_m3h": 15_000.0, "gas_lel": 0.0,
    "fire_temp_c": 30.0, "smoke_pct": 0.0, "power_kw": 300.0, "power_factor": 0.93,
}


def _batches(registry: Registry, n: int, per_series: int, seed: int,
             start: datetime) -> list[tuple[list[Reading], datetime, str]]:
    rng = random.Random(seed)
    series = [(gw.id, s.id, m) for _, gw in registry.iter_gateways() for s in gw.sensors for m in s.metrics]
    by_gw: dict[str, list[tuple[str, str]]] = {}
    for gw_id, sensor, metric in series:
        by_gw.setdefault(gw_id, []).append((sensor, metric))
    out: list[tuple[list[Reading], datetime, str]] = []
    total = 0
    step = 0
    while total < n:
        for gw_id, members in by_gw.items():
            readings: list[Reading] = []
            for k in range(per_series):
                ts = start + timedelta(seconds=60 * (step * per_series + k))
                local_h = (ts.hour + 7) % 24
                night = local_h >= 18 or local_h < 6
                for sensor, metric in members:
                    base = _TYPICAL.get(metric, METRICS[metric].min)
                    if metric in ("lamp_power_w", "lamp_current_a") and not night:
                        base = 0.0  # lamps follow their schedule
                    noise = 0.0 if METRICS[metric].boolean or base == 0 else base * 0.05 * rng.gauss(0, 1)
                    readings.append((sensor, metric, ts, max(base + noise, METRICS[metric].min), "good"))
            sent = readings[-1][2] + timedelta(seconds=1)
            out.append((readings, sent, gw_id))
            total += len(readings)
            if total >= n:
                break
        step += 1
    return out


def measure_rules(n: int = 200_000, *, per_series: int = 1, seed: int = 7,
                  rules: RuleSet | None = None, registry: Registry | None = None) -> float:
    """Readings per second through ``RuleEngine.ingest`` with the default rules."""
    from ops_center.rulebook.loader import load_rules  # the loader reads the bundled YAML

    registry = registry if registry is not None else load_registry()
    rules = rules if rules is not None else load_rules(registry=registry)
    engine = RuleEngine(rules, registry)
    start = datetime(2026, 3, 1, tzinfo=UTC)
    # Warm up the windows (24 h means, NowCast hours) outside the timed part.
    warm = _batches(registry, min(n, 20_000), per_series, seed + 1, start - timedelta(days=1))
    for readings, sent, gw in warm:
        engine.ingest(readings, sent, gw, sent)
    batches = _batches(registry, n, per_series, seed, start)
    count = sum(len(b[0]) for b in batches)
    t0 = time.process_time()  # CPU time: stable on a shared machine
    for readings, sent, gw in batches:
        engine.ingest(readings, sent, gw, sent)
    elapsed = time.process_time() - t0
    return count / elapsed if elapsed > 0 else math.inf


if __name__ == "__main__":  # pragma: no cover
    for k in (1, 10, 60):
        print(f"per_series={k}: {measure_rules(per_series=k):,.0f} readings/s")
