"""Rules that decide within two reporting intervals: counts of readings, learnt stuck
values, lamps judged from their own sunset, the wastewater flow balance (bypass)."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from contract.registry import load_registry
from contract.solar import sunrise_sunset
from ops_center.domain.engine import RuleEngine
from ops_center.domain.rules import RULE_ADAPTER, RuleSet, build_evaluator
from ops_center.domain.rules.base import EngineSettings, Evaluator, Target
from ops_center.domain.rules.levels import Machine
from ops_center.rulebook.loader import load_rules

REGISTRY = load_registry()
ICT = timezone(timedelta(hours=7))
TITLE = {"vi": "Thử", "en": "Test"}
T0 = datetime(2026, 12, 15, 10, tzinfo=ICT).timestamp()


def rule_of(rule: dict[str, Any]) -> Any:
    return RULE_ADAPTER.validate_python({"id": "r", "category": "test", "title": TITLE, **rule})


def evaluator(rule: dict[str, Any], sensor: str, metric: str, **target: Any) -> Evaluator:
    ev = build_evaluator(rule_of(rule), Target(REGISTRY.sensors[sensor], metric, EngineSettings(), **target))
    assert ev is not None
    return ev


def levels(ev: Evaluator, series: list[tuple[float, float]]) -> list[tuple[float, int]]:
    out = []
    for t, v in series:
        out += [(t, s.level) for s in ev.feed([t], [v], t)]
    return out


# --- raise on the Nth consecutive reading ------------------------------------------------------

def test_machine_raises_on_the_nth_consecutive_reading_whatever_the_jitter() -> None:
    m = Machine()
    # Readings 299.9 s apart: a 300 s hold would wait for a third; a count of 2 does not.
    assert m.step([0.0, 299.9, 599.8], [2, 2, 2], [2, 2, 2], 0.0, 0.0, 2) == [(1, 2)]


def test_a_break_restarts_the_count() -> None:
    m = Machine()
    assert m.step([0, 300, 600, 900], [2, 0, 2, 2], [2, 0, 2, 2], 0.0, 0.0, 2) == [(3, 2)]


def test_machine_state_of_an_older_snapshot_still_loads() -> None:
    m = Machine()
    m.load([0, 100.0, 2, None, 0])  # five fields, before the reading count
    assert m.step([400.0], [2], [2], 0.0, 0.0, 2) == [(0, 2)]


def test_discharge_limit_raises_on_the_first_reading_over_cmax() -> None:
    ev = evaluator({"kind": "regulatory_limit", "regulation": "QCVN 40", "factor_attrs": ["kq", "kf"],
                    "limits": {"ww_cod": {"B": {"max": 150, "hysteresis": 5}}}, "raise_after_readings": 1,
                    "clear_after_s": 900}, "ax-ww-01", "ww_cod")
    series = [(T0 + 300 * k, v) for k, v in enumerate([90.0, 120.0, 136.0, 180.0])]  # Cmax 150 x 0.9
    assert levels(ev, series) == [(T0 + 600, 2)]


# --- stuck values learnt per series ---------------------------------------------------------------

def lively(n: int, seed: int = 3) -> list[float]:
    rng = random.Random(seed)
    return [round(25 + 5 * rng.gauss(0, 1), 2) for _ in range(n)]


STUCK = {"kind": "stuck", "min_count": 30, "min_duration_s": 1800, "max_chance": 1e-8, "min_history": 500}


def test_stuck_value_on_a_lively_series_is_raised_within_a_few_readings() -> None:
    ev = evaluator(STUCK, "tn-aq-02", "pm25")
    history = lively(1500)
    series = [(T0 + 60 * k, v) for k, v in enumerate([*history, *[history[-1]] * 10])]
    out = levels(ev, series)
    assert len(out) == 1 and out[0][1] == 2
    repeats = (out[0][0] - series[len(history) - 1][0]) / 60
    assert repeats <= 4  # the 5th equal reading at most: (1/1500)^4 is far below 1e-8


def test_stuck_on_a_coarse_series_needs_a_longer_run() -> None:
    ev = evaluator(STUCK, "tn-aq-02", "pm25")
    rng = random.Random(5)
    # An instrument reporting whole µg/m³ around a steady level: short plateaus are normal.
    history = [float(round(25 + 0.6 * rng.gauss(0, 1))) for _ in range(3000)]
    assert levels(ev, [(T0 + 60 * k, v) for k, v in enumerate(history)]) == []
    tail = [(T0 + 60 * (3000 + k), 40.0) for k in range(12)]
    out = levels(ev, tail)
    assert out == [] or out[0][0] - tail[0][0] >= 5 * 60  # not within the lively series' 4


def run_at_raise(rule: dict[str, Any], history: list[float]) -> int | None:
    """How many equal readings the run has when it is raised, the last good reading included
    (a hung instrument repeats its last reading), or None."""
    ev = evaluator(rule, "tn-aq-02", "pm25")
    series = [(T0 + 60 * k, v) for k, v in enumerate([*history, *[history[-1]] * 12])]
    raised = [t for t, level in levels(ev, series) if level > 0]
    return None if not raised else round((raised[0] - series[len(history) - 1][0]) / 60) + 1


def test_the_shipped_rule_raises_a_frozen_lively_pm25_at_its_4th_equal_reading() -> None:
    """The default ``stuck-value`` on a 1-minute PM2.5 that moves ~1 µg/m³ a reading (the
    simulated stations: a chance repeat about one reading in 250): the hung instrument's
    first wrong reading repeats the last good one, and the 3rd wrong one (the 4th equal
    reading, 2 intervals after the onset) raises; a chance pair or triple does not."""
    shipped = load_rules(registry=REGISTRY).get("stuck-value").model_dump()
    rng = random.Random(11)
    lively_hours = [round(25 + 0.7 * rng.gauss(0, 1), 2) for _ in range(3000)]
    assert run_at_raise(shipped, lively_hours) == 4
    coarse = [float(round(25 + 0.7 * rng.gauss(0, 1))) for _ in range(3000)]  # whole µg/m³
    need = run_at_raise(shipped, coarse)
    assert need is None or need >= 6  # plateaus are normal there: not within 12 more readings


def test_stuck_before_enough_history_falls_back_to_count_and_duration() -> None:
    ev = evaluator(STUCK, "tn-aq-02", "pm25")
    series = [(T0 + 60 * k, v) for k, v in enumerate([*lively(100), *[7.5] * 40])]
    out = levels(ev, series)
    assert out == [(T0 + 60 * (100 + 30), 2)]  # 30 equal readings over 30 min


def test_stuck_state_round_trips_with_the_learnt_rate_and_old_states_load() -> None:
    a = evaluator(STUCK, "tn-aq-02", "pm25")
    b = evaluator(STUCK, "tn-aq-02", "pm25")
    series = [(T0 + 60 * k, v) for k, v in enumerate([*lively(800), *[9.0] * 8])]
    levels(a, series[:800])
    b.load(json.loads(json.dumps(a.state())))
    assert levels(a, series[800:]) == levels(b, series[800:]) != []
    c = evaluator(STUCK, "tn-aq-02", "pm25")
    c.load([9.0, T0, 3, False])  # a snapshot of the fixed-count rule
    assert levels(c, [(T0 + 60 * k, 9.0) for k in range(1, 3)]) == []


# --- lamps judged from their own sunset --------------------------------------------------------------

LAMP_OUT = {"kind": "threshold", "direction": "below", "scale_attr": "rated_w",
            "levels": [{"at": 0.1, "severity": "warning"}], "hysteresis": 0.1,
            "dark": {"after_sunset_s": 900, "before_sunrise_s": 900}, "raise_after_readings": 2}


def test_lamp_out_is_judged_from_sunset_plus_the_margin_at_the_lamps_location() -> None:
    loc = REGISTRY.sensors["tn-lamp-07"].spec.location or REGISTRY.sites["thong-nhat"].location
    assert loc is not None
    ev = evaluator(LAMP_OUT, "tn-lamp-07", "lamp_power_w", lat=loc.lat, lon=loc.lon)
    _, sset = sunrise_sunset(T0, loc.lat, loc.lon)
    start = (int(sset) // 300 - 3) * 300  # 5-minute readings from 15 min before sunset
    series = [(float(start + 300 * k), 0.0) for k in range(12)]  # the lamp never lights
    out = levels(ev, series)
    assert len(out) == 1 and out[0][1] == 2
    due = sset + 900
    assert due < out[0][0] <= due + 600  # within two 5-minute intervals of when it was due on


def test_lamp_out_is_quiet_by_day_and_when_lit_at_night() -> None:
    loc = REGISTRY.sites["thong-nhat"].location
    ev = evaluator(LAMP_OUT, "tn-lamp-07", "lamp_power_w", lat=loc.lat, lon=loc.lon)
    day = [(T0 + 300 * k, 0.0) for k in range(24)]  # 10:00-12:00, off as it should be
    _, sset = sunrise_sunset(T0, loc.lat, loc.lon)
    night = [(sset + 1200 + 300 * k, 150.0) for k in range(24)]
    assert levels(ev, day + night) == []


def test_dark_rule_without_a_position_does_not_apply_and_hours_exclude_dark() -> None:
    r = rule_of(LAMP_OUT)
    lamp = REGISTRY.sensors["tn-lamp-07"]
    assert build_evaluator(r, Target(lamp, "lamp_power_w", EngineSettings())) is None
    with pytest.raises(ValueError, match="either hours or dark"):
        rule_of({**LAMP_OUT, "hours": {"from": "19:00", "to": "05:00"}})


def test_engine_gives_lamp_rules_the_registry_location() -> None:
    engine = RuleEngine(load_rules(registry=REGISTRY), REGISTRY)
    loc = REGISTRY.sites["thong-nhat"].location
    _, sset = sunrise_sunset(T0, loc.lat, loc.lon)
    t = datetime.fromtimestamp((int(sset + 900) // 300 + 1) * 300, ICT)
    changes = []
    for k in range(3):
        ts = t + timedelta(seconds=300 * k)
        gw = REGISTRY.sensors["tn-lamp-07"].gateway
        changes += engine.ingest([("tn-lamp-07", "lamp_power_w", ts, 0.0, "good")], ts, gw, ts)
    assert [c.alert.rule for c in changes] == ["lamp-out"]


# --- flow balance (bypass) ----------------------------------------------------------------------------

BYPASS = {"kind": "flow_balance", "margin_pct": 10, "hysteresis_pct": 5, "raise_after_readings": 2,
          "clear_after_s": 600, "severity": "critical"}


def pair(rule: dict[str, Any]) -> tuple[Evaluator, Evaluator]:
    shared: dict[Any, Any] = {}
    r = rule_of(rule)
    ref = REGISTRY.sensors["ax-ww-01"]
    a = build_evaluator(r, Target(ref, "ww_flow_in_m3h", EngineSettings(), shared=shared))
    b = build_evaluator(r, Target(ref, "ww_flow_out_m3h", EngineSettings(), shared=shared))
    assert a is not None and b is not None
    return a, b


def flows(ev_in: Evaluator, ev_out: Evaluator, rows: list[tuple[float, float, float]],
          out_first: bool = False) -> list[tuple[float, int, float, float | None]]:
    res = []
    for t, fin, fout in rows:
        order = [(ev_out, fout), (ev_in, fin)] if out_first else [(ev_in, fin), (ev_out, fout)]
        for ev, v in order:
            res += [(t, s.level, s.value, s.limit) for s in ev.feed([t], [v], t)]
    return res


def test_outflow_above_inflow_beyond_the_margin_raises_after_two_readings_and_clears() -> None:
    ev_in, ev_out = pair(BYPASS)
    rows = [(T0 + 300 * k, 40.0, 38.8) for k in range(5)]                  # normal: out ≈ 0.97 in
    rows += [(T0 + 300 * (5 + k), 40.0, 95.0) for k in range(4)]          # bypass valve open
    rows += [(T0 + 300 * (9 + k), 40.0, 38.5) for k in range(4)]          # closed again
    out = flows(ev_in, ev_out, rows)
    assert [(t, lv) for t, lv, _, _ in out] == [(T0 + 1800, 3), (T0 + 300 * 11, 0)]
    _, _, value, limit = out[0]
    assert value == 95.0 and limit == pytest.approx(44.0)  # in + 10 %


def test_bypass_pairs_readings_by_time_whichever_metric_comes_first() -> None:
    rows = [(T0 + 300 * k, 40.0, 38.8 if k < 3 else 60.0) for k in range(6)]
    a = flows(*pair(BYPASS), rows)
    b = flows(*pair(BYPASS), rows, out_first=True)
    assert [x[:2] for x in a] == [x[:2] for x in b] == [(T0 + 1200, 3)]


def test_outflow_with_no_inflow_is_a_bypass_and_normal_scatter_is_not() -> None:
    rng = random.Random(4)
    normal = [(T0 + 300 * k, f, f * (0.97 + 0.01 * rng.gauss(0, 1)))
              for k, f in enumerate(40 + 20 * rng.random() for _ in range(2000))]
    assert flows(*pair(BYPASS), normal) == []
    dry = [(T0 + 300 * k, 0.0, 12.0) for k in range(3)]
    assert [x[:2] for x in flows(*pair(BYPASS), dry)] == [(T0 + 300, 3)]


def test_bypass_needs_both_flows_and_state_round_trips() -> None:
    r = rule_of(BYPASS)
    aq = REGISTRY.sensors["tn-aq-01"]
    assert build_evaluator(r, Target(aq, "pm25", EngineSettings(), shared={})) is None
    a_in, a_out = pair(BYPASS)
    rows = [(T0 + 300 * k, 40.0, 70.0) for k in range(4)]
    flows(a_in, a_out, rows[:1])
    b_in, b_out = pair(BYPASS)
    b_in.load(json.loads(json.dumps(a_in.state())))
    assert flows(a_in, a_out, rows[1:]) == flows(b_in, b_out, rows[1:]) != []


def test_engine_raises_one_bypass_alert_on_the_outflow_metric() -> None:
    rules = load_rules(registry=REGISTRY)
    engine = RuleEngine(RuleSet(rules.rules, rules.overrides, rules.settings), REGISTRY)
    t = datetime.fromtimestamp(T0, ICT)
    changes = []
    for k in range(4):
        ts = t + timedelta(seconds=300 * k)
        out = 38.0 if k == 0 else 120.0
        batch = [("ax-ww-01", "ww_flow_out_m3h", ts, out, "good"),
                 ("ax-ww-01", "ww_flow_in_m3h", ts, 40.0, "good")]
        changes += engine.ingest(batch, ts, "ax-gw-01", ts)
    bypass = [c for c in changes if c.alert.rule == "ww-bypass"]
    assert len(bypass) == 1 and bypass[0].alert.metric == "ww_flow_out_m3h"
    assert bypass[0].alert.severity == "critical" and bypass[0].alert.category == "wastewater"
