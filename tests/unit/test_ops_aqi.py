"""VN_AQI per QĐ 1459/QĐ-TCMT: the decision's worked examples (§2.3) and boundary cases."""

from __future__ import annotations

import pytest

from ops_center.domain import aqi

# §2.3 a: PM2.5 hourly means 09:00 … 20:00; c1 is 20:00.
PM25_0900_TO_2000 = [26.9, 24.7, 20.5, 23.5, 19.5, 16.5, 19.0, 16.5, 20.3, 22.4, 19.6, 20.6]
C1_FIRST = list(reversed(PM25_0900_TO_2000))


def test_nowcast_reproduces_the_decisions_example() -> None:
    assert aqi.nowcast_weight(C1_FIRST) == pytest.approx(0.613, abs=5e-4)
    assert aqi.nowcast(C1_FIRST) == pytest.approx(20.27, abs=5e-3)
    assert round(aqi.nowcast(C1_FIRST) or 0, 1) == 20.3


def test_nowcast_needs_two_of_the_three_latest_hours() -> None:
    assert aqi.nowcast([None, None, 30.0, 30.0]) is None
    assert aqi.nowcast([30.0, None, None, 40.0]) is None
    assert aqi.nowcast([30.0, None, 30.0]) == pytest.approx(30.0)


def test_nowcast_gives_missing_hours_weight_zero() -> None:
    # w* = 10/40 <= 1/2 -> w = 1/2; c2 missing: (40 + 0.25*10) / (1 + 0.25)
    assert aqi.nowcast([40.0, None, 10.0]) == pytest.approx((40 + 0.25 * 10) / 1.25)


def test_nowcast_uses_half_when_the_series_varies_a_lot() -> None:
    assert aqi.nowcast_weight([100.0, 10.0]) == 0.5
    assert aqi.nowcast([0.0, 0.0, 0.0]) == 0.0


def test_hourly_components_match_the_decision() -> None:
    assert aqi.sub_index("o3_1h", 136.1) == pytest.approx(42.53, abs=5e-3)
    assert aqi.sub_index("no2", 118.7) == pytest.approx(59.35)
    assert aqi.sub_index("pm25", 20.3) == pytest.approx(40.6)
    result = aqi.hourly_aqi({"pm25": C1_FIRST}, {"o3": 136.1, "no2": 118.7})
    assert result is not None
    by_pollutant = {c.pollutant: c.index for c in result.components}
    assert by_pollutant == {"o3": 43, "no2": 59, "pm25": 41}
    # The decision prints 60 for NO₂ (59.35 by its own formula); we compute 59.
    assert result.value == 59
    assert result.dominant == "no2"
    assert result.category.label_vi == "Trung bình"


def test_daily_aqi_matches_the_decision() -> None:
    result = aqi.daily_aqi({"pm25": 55.7}, {"o3": 114.6, "no2": 130.8}, o3_max_8h=89.3)
    assert result is not None
    assert result.value == 110
    assert result.dominant == "pm25"
    assert aqi.round_half_up(aqi.sub_index("o3_8h", 89.3)) == 45
    assert aqi.round_half_up(aqi.sub_index("o3_1h", 114.6)) == 36
    assert aqi.round_half_up(aqi.sub_index("no2", 130.8)) == 65
    assert aqi.round_half_up(aqi.sub_index("pm25", 55.7)) == 110
    o3 = next(c for c in result.components if c.pollutant == "o3")
    assert (o3.column, o3.index) == ("o3_8h", 45)  # the larger of 45 (8h) and 36 (1h)
    assert result.category.label_vi == "Kém"


def test_daily_o3_drops_the_8h_column_above_400() -> None:
    result = aqi.daily_aqi({"pm10": 20.0}, {"o3": 500.0}, o3_max_8h=450.0)
    assert result is not None
    o3 = next(c for c in result.components if c.pollutant == "o3")
    assert o3.column == "o3_1h"
    assert o3.index == aqi.round_half_up(aqi.sub_index("o3_1h", 500.0))


def test_daily_inputs_find_the_max_8h_mean_of_the_decisions_example() -> None:
    # §2.2.2 a: hourly O₃ from 18:00 the day before to 00:00; max 8 h mean 74.4.
    o3 = [15.7, 14.2, 17.7, 18.9, 19.3, 15.7, 19.7, 22.6, 27.1, 29.0, 31.9, 25.3, 34.7, 35.2, 41.6, 45.7,
          49.2, 55.8, 69.6, 78.3, 91.5, 97.7, 81.2, 71.8, 43.5, 34.3, 21.5, 20.5, 19.4, 20.4, 21.3]
    _, max_1h, max_8h = aqi.daily_inputs({"o3": o3})
    assert max_8h == pytest.approx(74.4, abs=0.05)
    assert max_1h["o3"] == 97.7


def test_no_aqi_without_pm() -> None:
    assert aqi.hourly_aqi({}, {"o3": 300.0, "no2": 500.0}) is None
    assert aqi.daily_aqi({}, {"co": 40_000.0}) is None
    assert aqi.hourly_aqi({"pm25": [None, None, None]}, {"o3": 300.0}) is None


def test_pm10_alone_is_enough() -> None:
    result = aqi.hourly_aqi({"pm10": [100.0, 100.0]}, {})
    assert result is not None and result.value == 75


@pytest.mark.parametrize(
    ("column", "concentration", "expected"),
    [
        ("pm25", 0.0, 0), ("pm25", 25.0, 50), ("pm25", 50.0, 100), ("pm25", 80.0, 150),
        ("pm25", 150.0, 200), ("pm25", 250.0, 300), ("pm25", 350.0, 400), ("pm25", 500.0, 500),
        ("pm25", 900.0, 500), ("co", 10_000.0, 50), ("co", 30_000.0, 100), ("so2", 2630.0, 500),
        ("o3_1h", 1200.0, 500), ("no2", 3850.0, 500), ("pm10", 600.0, 500), ("o3_8h", 400.0 - 1e-9, 300),
        ("pm25", -3.0, 0),
    ],
)
def test_breakpoints_of_bang_2(column: str, concentration: float, expected: int) -> None:
    assert aqi.round_half_up(aqi.sub_index(column, concentration)) == expected


def test_o3_8h_has_no_index_above_400() -> None:
    with pytest.raises(ValueError, match="1h column"):
        aqi.sub_index("o3_8h", 400.5)


def test_o3_8h_of_exactly_400_is_300() -> None:
    # Bảng 2: 400 µg/m³ is the O₃ 8h column's last breakpoint, I = 300 (it used to raise).
    assert aqi.sub_index("o3_8h", 400.0) == 300.0
    result = aqi.daily_aqi({"pm25": 10.0}, {"o3": 100.0}, o3_max_8h=400.0)
    assert result is not None
    o3 = next(c for c in result.components if c.pollutant == "o3")
    assert (o3.column, o3.index) == ("o3_8h", 300)
    assert (result.value, result.dominant) == (300, "o3")


def test_half_up_rounding() -> None:
    assert aqi.round_half_up(109.5) == 110
    assert aqi.round_half_up(109.49999999999999) == 110  # binary noise of an exact .5
    assert aqi.round_half_up(42.53) == 43
    assert aqi.round_half_up(59.35) == 59
    assert aqi.round_half_up(0.5) == 1


@pytest.mark.parametrize(
    ("value", "label", "colour"),
    [(0, "Tốt", "#00E400"), (50, "Tốt", "#00E400"), (51, "Trung bình", "#FFFF00"),
     (100, "Trung bình", "#FFFF00"),
     (101, "Kém", "#FF7E00"), (150, "Kém", "#FF7E00"), (151, "Xấu", "#FF0000"), (200, "Xấu", "#FF0000"),
     (201, "Rất xấu", "#8F3F97"), (300, "Rất xấu", "#8F3F97"), (301, "Nguy hại", "#7E0023"),
     (500, "Nguy hại", "#7E0023")],
)
def test_categories_of_bang_1(value: int, label: str, colour: str) -> None:
    cat = aqi.category(value)
    assert (cat.label_vi, cat.colour_hex) == (label, colour)
    assert cat.health_vi and cat.health_en and cat.label_en


def test_dominant_prefers_pm_on_a_tie() -> None:
    result = aqi.hourly_aqi({"pm25": [25.0, 25.0]}, {"no2": 100.0})
    assert result is not None and result.value == 50 and result.dominant == "pm25"
