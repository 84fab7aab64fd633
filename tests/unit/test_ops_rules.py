"""Every rule kind on its own: raise, clear, hysteresis, durations, directions, attributes."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from contract.registry import load_registry
from ops_center.domain.rules import RULE_ADAPTER, build_evaluator
from ops_center.domain.rules.base import EngineSettings, Evaluator, Target
from ops_center.domain.rules.levels import LevelMap, Machine

REGISTRY = load_registry()
T0 = datetime(2026, 3, 2, 3, 0, tzinfo=UTC).timestamp()  # 10:00 local (UTC+7)
TITLE = {"vi": "Thử", "en": "Test"}


def evaluator(rule: dict[str, Any], sensor: str, metric: str, **settings: Any) -> Evaluator:
    r = RULE_ADAPTER.validate_python({"id": "r", "category": "test", "title": TITLE, **rule})
    ev = build_evaluator(r, Target(REGISTRY.sensors[sensor], metric, EngineSettings(**settings)))
    assert ev is not None
    return ev


def run(ev: Evaluator, series: list[tuple[float, float]],
        sent: float | None = None) -> list[tuple[float, int]]:
    """Feed (seconds after T0, value) one reading at a time; (seconds, level) transitions."""
    out: list[tuple[float, int]] = []
    for dt, v in series:
        for sig in ev.feed([T0 + dt], [v], sent if sent is not None else T0 + dt):
            out.append((dt, sig.level))
    return out


def minutes(values: Sequence[float], step_s: float = 60.0) -> list[tuple[float, float]]:
    return [(i * step_s, v) for i, v in enumerate(values)]


FLOOD = {"kind": "threshold", "levels": [{"at": 10, "severity": "info"}, {"at": 20, "severity": "warning"},
                                         {"at": 30, "severity": "critical"}],
         "hysteresis": 3, "raise_after_s": 120, "clear_after_s": 300}


# --- threshold ----------------------------------------------------------------------------------

def test_threshold_raises_only_after_the_minimum_duration() -> None:
    ev = evaluator(FLOOD, "tn-flood-01", "water_level_cm")
    # 2 minutes at >= 20 are needed: a 1-minute spike does nothing.
    assert run(ev, minutes([0, 25, 0, 0])) == []
    assert run(ev, [(300 + dt, v) for dt, v in minutes([21, 22, 23])]) == [(420, 2)]


def test_threshold_escalates_and_clears_with_hysteresis_and_hold() -> None:
    ev = evaluator(FLOOD, "tn-flood-01", "water_level_cm")
    values = [12, 12, 12, 25, 25, 25, 35, 35, 35, 26, 26, 26, 26, 26, 26, 9, 9, 9, 9, 9, 9, 6, 6, 6, 6, 6, 6]
    assert run(ev, minutes(values)) == [
        (120, 1),   # >= 10 for 2 min
        (300, 2),   # >= 20 for 2 min
        (480, 3),   # >= 30 for 2 min
        (840, 2),   # below 30 - 3 for 5 min -> back to warning
        (1200, 1),  # 9 is below 20 - 3 but above 10 - 3: info
        (1560, 0),  # below 7 for 5 min -> clear
    ]


def test_threshold_value_inside_the_hysteresis_keeps_the_level() -> None:
    ev = evaluator(FLOOD, "tn-flood-01", "water_level_cm")
    assert run(ev, minutes([35, 35, 35, 28, 28, 28, 28, 28, 28, 28])) == [(120, 3)]


def test_threshold_hysteresis_band_holds_the_alert() -> None:
    ev = evaluator({**FLOOD, "raise_after_s": 0, "clear_after_s": 0}, "tn-flood-01", "water_level_cm")
    assert run(ev, minutes([11, 8, 9, 7.5, 6.9])) == [(0, 1), (240, 0)]


def test_threshold_pending_raise_restarts_when_the_condition_breaks() -> None:
    ev = evaluator(FLOOD, "tn-flood-01", "water_level_cm")
    assert run(ev, minutes([15, 15, 5, 15, 15, 15])) == [(300, 1)]


def test_threshold_below_direction_mirrors() -> None:
    rule = {"kind": "threshold", "direction": "below", "hysteresis": 5,
            "levels": [{"at": 50, "severity": "warning"}, {"at": 20, "severity": "critical"}]}
    ev = evaluator(rule, "tn-drain-01", "drain_freeboard_cm")
    assert run(ev, minutes([80, 50, 30, 19, 22, 26, 54, 56])) == [(60, 2), (180, 3), (300, 2), (420, 0)]


def test_threshold_scaled_by_a_sensor_attribute_and_limited_to_hours() -> None:
    rule = {"kind": "threshold", "direction": "below", "scale_attr": "rated_w", "hysteresis": 0.1,
            "levels": [{"at": 0.1, "severity": "warning"}], "hours": {"from": "19:00", "to": "05:00"}}
    ev = evaluator(rule, "tn-lamp-01", "lamp_power_w")  # rated_w 150 -> raise at <= 15 W, clear above 30 W
    # 10:00 local: off by day is normal.
    assert run(ev, minutes([0, 0, 0])) == []
    night = datetime(2026, 3, 2, 13, 0, tzinfo=UTC).timestamp() - T0  # 20:00 local
    assert run(ev, [(night + dt, v) for dt, v in minutes([140, 14, 20, 31])]) == [(night + 60, 2),
                                                                                   (night + 180, 0)]


def test_threshold_rule_without_its_scale_attribute_does_not_apply() -> None:
    rule = RULE_ADAPTER.validate_python({"id": "r", "category": "t", "title": TITLE, "kind": "threshold",
                                         "scale_attr": "rated_w", "levels": [{"at": 1, "severity": "info"}]})
    assert build_evaluator(rule, Target(REGISTRY.sensors["tn-aq-01"], "pm25", EngineSettings())) is None


def test_threshold_levels_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="ordered"):
        evaluator({"kind": "threshold", "levels": [{"at": 20, "severity": "warning"},
                                                   {"at": 10, "severity": "critical"}]},
                  "tn-flood-01", "water_level_cm")


def test_batch_feeding_equals_one_by_one() -> None:
    rng = random.Random(3)
    values = [max(0.0, 15 + 12 * rng.gauss(0, 1)) for _ in range(400)]
    one = evaluator(FLOOD, "tn-flood-01", "water_level_cm")
    batch = evaluator(FLOOD, "tn-flood-01", "water_level_cm")
    expected = run(one, minutes(values))
    got: list[tuple[float, int]] = []
    for start in range(0, 400, 37):
        chunk = minutes(values)[start:start + 37]
        sigs = batch.feed([T0 + t for t, _ in chunk], [v for _, v in chunk], T0)
        got.extend((chunk[s.index][0], s.level) for s in sigs)
    assert got == expected and expected


def test_machine_fast_path_agrees_with_the_full_loop() -> None:
    rng = random.Random(11)
    lmap = LevelMap([(10, 1), (20, 2)], [(-5, 3)], 2.0)
    for _ in range(50):
        vals = [rng.uniform(-10, 30) for _ in range(20)]
        ts = [float(i) for i in range(20)]
        full, fast = Machine(), Machine()
        a = full.step(ts, [lmap.up(v) for v in vals], [lmap.down(v) for v in vals], 2, 3)
        from ops_center.domain.rules.levels import run_levels
        b = [(s.index, s.level) for s in run_levels(fast, lmap, ts, vals, 2, 3)]
        assert a == b


# --- rate -----------------------------------------------------------------------------------------

def test_rate_of_rise_over_a_window() -> None:
    rule = {"kind": "rate", "window_s": 600, "levels": [{"at": 5, "severity": "warning"}],
            "hysteresis": 3, "clear_after_s": 120}
    ev = evaluator(rule, "tn-flood-01", "water_level_cm")
    # +1 cm/min: the rise over 10 minutes exceeds 5 cm at minute 6; then the water stays.
    values = [0, 1, 2, 3, 4, 5, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7]
    assert run(ev, minutes(values)) == [(360, 2), (1020, 0)]  # rise 2 at 15 min, held 2 min


def test_rate_falling_direction() -> None:
    rule = {"kind": "rate", "direction": "falling", "window_s": 600,
            "levels": [{"at": 10, "severity": "warning"}]}
    ev = evaluator(rule, "tn-drain-01", "drain_freeboard_cm")
    assert run(ev, minutes([90, 85, 80, 75])) == [(180, 2)]


def test_rate_exactly_at_the_limit_does_not_raise() -> None:
    rule = {"kind": "rate", "window_s": 600, "levels": [{"at": 5, "severity": "warning"}]}
    ev = evaluator(rule, "tn-flood-01", "water_level_cm")
    assert run(ev, minutes([0, 5, 5])) == []


# --- rolling mean ----------------------------------------------------------------------------------

PM25_24H = {"kind": "rolling_mean", "window_s": 86400, "min_coverage": 0.25, "strict": True,
            "levels": [{"at": 50, "severity": "warning"}], "hysteresis": 2,
            "schedule": [{"since": "2026-01-01", "levels": [{"at": 45, "severity": "warning"}]}]}


def test_rolling_24h_pm25_waits_for_coverage_then_follows_the_mean() -> None:
    ev = evaluator({**PM25_24H, "schedule": []}, "tn-aq-01", "pm25")
    start = datetime(2025, 12, 1, tzinfo=UTC).timestamp() - T0
    # 6 h of data are needed (25 % of 1440 one-minute readings = 360).
    got = run(ev, [(start + i * 60, 80.0) for i in range(400)])
    assert got == [(start + 359 * 60, 2)]


def test_pm25_limit_tightens_on_2026_01_01() -> None:
    ev = evaluator(PM25_24H, "tn-aq-01", "pm25")
    before = datetime(2025, 12, 30, tzinfo=UTC).timestamp() - T0
    assert run(ev, [(before + i * 60, 47.0) for i in range(500)]) == []   # 47 <= 50 in 2025
    ev2 = evaluator(PM25_24H, "tn-aq-01", "pm25")
    after = datetime(2026, 1, 2, tzinfo=UTC).timestamp() - T0
    assert run(ev2, [(after + i * 60, 47.0) for i in range(500)]) == [(after + 359 * 60, 2)]  # 47 > 45


def test_rolling_mean_clears_when_the_mean_drops() -> None:
    rule = {"kind": "rolling_mean", "window_s": 600, "min_coverage": 0.5, "strict": True,
            "levels": [{"at": 200, "severity": "warning"}], "hysteresis": 10}
    ev = evaluator(rule, "tn-aq-01", "no2")
    values = [300.0] * 10 + [100.0] * 10
    assert run(ev, minutes(values)) == [(240, 2), (900, 0)]  # 5 readings; mean 180 at 15 min


# --- hourly LAeq vs QCVN 26 -----------------------------------------------------------------------

NOISE = {"kind": "laeq_hourly", "limits": {"special": {"day": 55, "night": 45},
                                            "normal": {"day": 70, "night": 55}},
         "day": {"from": "06:00", "to": "21:00"},
         "levels": [{"at": 0, "severity": "warning"}, {"at": 10, "severity": "critical"}]}


def test_laeq_is_the_energetic_mean_of_the_hour() -> None:
    ev = evaluator(NOISE, "tn-noise-02", "noise_laeq")  # normal zone: 70 dB by day
    # Half the hour at 60 dB, half at 76 dB: energetic mean 73.1 dB (arithmetic would be 68).
    hour = [60.0] * 30 + [76.0] * 30
    got = ev.feed([T0 + i * 60 for i in range(61)], [*hour, 50.0], T0)
    assert [(s.index, s.level) for s in got] == [(60, 2)]
    assert got[0].value == pytest.approx(73.1, abs=0.05)
    assert got[0].limit == 70


def test_laeq_uses_the_zone_and_night_limits() -> None:
    ev = evaluator(NOISE, "tn-noise-01", "noise_laeq")  # special zone (school)
    night = datetime(2026, 3, 2, 15, 0, tzinfo=UTC).timestamp()  # 22:00 local: limit 45
    sigs = ev.feed([night + i * 60 for i in range(61)], [50.0] * 61, night)
    assert [(s.level, s.limit) for s in sigs] == [(2, 45)]
    ev2 = evaluator(NOISE, "tn-noise-01", "noise_laeq")
    sigs = ev2.feed([night + i * 60 for i in range(61)], [58.0] * 61, night)
    assert [(s.level, s.limit) for s in sigs] == [(3, 45)]  # 13 dB over -> critical


def test_laeq_equal_to_the_limit_complies() -> None:
    ev = evaluator(NOISE, "tn-noise-02", "noise_laeq")
    assert ev.feed([T0 + i * 60 for i in range(61)], [70.0] * 61, T0) == []


def test_laeq_rule_skips_sensors_without_a_zone() -> None:
    rule = RULE_ADAPTER.validate_python({"id": "r", "category": "noise", "title": TITLE, **NOISE})
    assert build_evaluator(rule, Target(REGISTRY.sensors["tn-aq-01"], "noise_laeq", EngineSettings())) is None


# --- QCVN 40 / 19 with coefficients ---------------------------------------------------------------

QCVN40 = {"kind": "regulatory_limit", "regulation": "QCVN 40:2011/BTNMT", "factor_attrs": ["kq", "kf"],
          "limits": {"ww_cod": {"A": {"max": 75}, "B": {"max": 150}},
                     "ww_ph": {"A": {"min": 6, "max": 9, "factored": False},
                               "B": {"min": 5.5, "max": 9, "factored": False, "hysteresis": 0.2}}},
          "critical_ratio": 2.0}


def test_cod_limit_is_column_b_times_kq_times_kf() -> None:
    ev = evaluator(QCVN40, "ax-ww-01", "ww_cod")  # column B, kq 0.9, kf 1.0 -> 135 mg/L
    sigs = ev.feed([T0, T0 + 300, T0 + 600], [135.0, 136.0, 280.0], T0)
    assert [(s.index, s.level) for s in sigs] == [(1, 2), (2, 3)]
    assert [s.limit for s in sigs] == pytest.approx([135.0, 270.0])


def test_ph_range_is_not_factored() -> None:
    ev = evaluator(QCVN40, "ax-ww-01", "ww_ph")
    sigs = ev.feed([T0 + i * 300 for i in range(5)], [7.0, 5.4, 5.6, 5.8, 9.1], T0)
    assert [(s.index, s.level, s.limit) for s in sigs] == [(1, 2, 5.5), (3, 0, pytest.approx(5.5)),
                                                            (4, 2, 9.0)]


def test_regulatory_rule_ignores_metrics_without_limits() -> None:
    rule = RULE_ADAPTER.validate_python({"id": "r", "category": "ww", "title": TITLE, **QCVN40})
    assert build_evaluator(rule, Target(REGISTRY.sensors["ax-ww-01"], "ww_tss", EngineSettings())) is None


def test_stack_limit_uses_kp_and_kv() -> None:
    rule = {"kind": "regulatory_limit", "regulation": "QCVN 19", "factor_attrs": ["kp", "kv"],
            "limits": {"stack_dust": {"B": {"max": 200}}}}
    ev = evaluator(rule, "ax-stack-01", "stack_dust")  # kp 1.0, kv 1.0
    assert [s.level for s in ev.feed([T0, T0 + 60], [200.0, 201.0], T0)] == [2]


# --- NowCast AQI ------------------------------------------------------------------------------------

def test_pm_aqi_rule_raises_on_bad_nowcast() -> None:
    rule = {"kind": "nowcast_aqi", "levels": [{"at": 151, "severity": "warning"},
                                              {"at": 201, "severity": "critical"}], "hysteresis": 10}
    ev = evaluator(rule, "tn-aq-01", "pm25")
    # One hour at 60 µg/m³, then 120: NowCast needs two of the last three hours first.
    got = run(ev, minutes([60.0] * 60 + [160.0] * 30))
    assert got and got[0][1] == 2
    first = got[0][0]
    assert 3600 <= first < 5400


def test_pm_aqi_rule_only_for_pm() -> None:
    rule = RULE_ADAPTER.validate_python({"id": "r", "category": "air", "title": TITLE, "kind": "nowcast_aqi",
                                         "levels": [{"at": 151, "severity": "warning"}]})
    assert build_evaluator(rule, Target(REGISTRY.sensors["tn-aq-01"], "no2", EngineSettings())) is None


# --- data quality ----------------------------------------------------------------------------------

def test_stuck_value_needs_count_and_duration() -> None:
    rule = {"kind": "stuck", "min_count": 5, "min_duration_s": 600}
    ev = evaluator(rule, "tn-aq-01", "pm25")
    values = [30.0] * 11 + [31.0]
    assert run(ev, minutes(values)) == [(600, 2), (660, 0)]


def test_stuck_ignores_a_process_at_zero() -> None:
    ev = evaluator({"kind": "stuck", "min_count": 3, "min_duration_s": 0}, "ax-stack-01", "stack_dust")
    assert run(ev, minutes([0.0] * 10)) == []


def test_out_of_bounds_flags_and_clears_after_good_readings() -> None:
    ev = evaluator({"kind": "out_of_bounds", "clear_after_count": 2}, "tn-aq-01", "pm25")  # 0..1000
    assert run(ev, minutes([10, 1500, 20, 30, 40])) == [(60, 2), (180, 0)]


def test_clock_skew_flags_readings_ahead_of_sent_at() -> None:
    ev = evaluator({"kind": "clock_skew", "max_ahead_s": 120}, "tn-aq-01", "pm25")
    sigs = ev.feed([T0, T0 + 100, T0 + 500], [1.0, 1.0, 1.0], T0)
    assert [(s.index, s.level) for s in sigs] == [(2, 1)]


# --- anomaly ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["ewma", "robust_z"])
def test_anomaly_flags_a_jump_after_enough_history(method: str) -> None:
    rule = {"kind": "anomaly", "method": method, "z": 6, "min_history": 30, "window": 60}
    ev = evaluator(rule, "ax-pwr-01", "power_kw")
    rng = random.Random(5)
    normal = [300 + rng.gauss(0, 5) for _ in range(100)]
    assert run(ev, minutes(normal)) == []
    got = run(ev, [(6000 + dt, v) for dt, v in minutes([600.0, 300.0, 301.0, 299.0])])
    assert got[0] == (6000, 1)
    assert got[-1][1] == 0


def test_anomaly_waits_for_history() -> None:
    ev = evaluator({"kind": "anomaly", "min_history": 30}, "ax-pwr-01", "power_kw")
    assert run(ev, minutes([300.0, 900.0, 10.0, 800.0])) == []


# --- state round trip ------------------------------------------------------------------------------

@pytest.mark.parametrize(("rule", "sensor", "metric"), [
    (FLOOD, "tn-flood-01", "water_level_cm"),
    ({"kind": "rate", "window_s": 600, "levels": [{"at": 5, "severity": "warning"}]}, "tn-flood-01",
     "water_level_cm"),
    (PM25_24H, "tn-aq-01", "pm25"),
    (NOISE, "tn-noise-02", "noise_laeq"),
    ({"kind": "nowcast_aqi", "levels": [{"at": 151, "severity": "warning"}]}, "tn-aq-01", "pm25"),
    ({"kind": "stuck", "min_count": 5, "min_duration_s": 60}, "tn-aq-01", "pm25"),
    ({"kind": "anomaly", "method": "robust_z", "min_history": 10, "window": 16}, "ax-pwr-01", "power_kw"),
    ({"kind": "anomaly", "method": "ewma", "min_history": 10}, "ax-pwr-01", "power_kw"),
])
def test_evaluator_state_round_trips(rule: dict[str, Any], sensor: str, metric: str) -> None:
    import json

    rng = random.Random(2)
    series = minutes([max(0.0, 40 + 30 * rng.gauss(0, 1)) for _ in range(150)])
    a = evaluator(rule, sensor, metric)
    b = evaluator(rule, sensor, metric)
    run(a, series[:100])
    b.load(json.loads(json.dumps(a.state())))
    assert run(a, series[100:]) == run(b, series[100:])
