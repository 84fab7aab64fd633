"""contract.solar: NOAA sunrise/sunset shared by the simulators and the ops center's lamp rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from contract.solar import DarkHours, local_day, sunrise_sunset

ICT = timezone(timedelta(hours=7))
NAM_DINH = (20.442, 106.167)


def _local(t: float) -> datetime:
    return datetime.fromtimestamp(t, ICT)


def test_sunrise_and_sunset_in_nam_dinh_fall_in_the_expected_minutes() -> None:
    # Mid-December: sunrise ~06:23, sunset ~17:17; mid-June: sunrise ~05:15, sunset ~18:40
    # (docs/domain-facts.md §4.3 lamp hours); the bounds allow the method's minute or two.
    for day, rise_hm, set_hm in ((datetime(2026, 12, 15, 12, tzinfo=ICT), (6, 23), (17, 17)),
                                 (datetime(2026, 6, 21, 12, tzinfo=ICT), (5, 15), (18, 40))):
        rise, sset = sunrise_sunset(day.timestamp(), *NAM_DINH)
        for got, (h, m) in ((rise, rise_hm), (sset, set_hm)):
            want = day.replace(hour=h, minute=m).timestamp()
            assert abs(got - want) <= 300, (_local(got), h, m)


def test_day_length_at_the_equinox_is_about_twelve_hours_and_seven_minutes() -> None:
    # Refraction and the solar disc (zenith 90.833°) lengthen the equinox day by ~7 min.
    rise, sset = sunrise_sunset(datetime(2026, 3, 20, 12, tzinfo=ICT).timestamp(), *NAM_DINH)
    assert (sset - rise) / 60 == pytest.approx(12 * 60 + 7, abs=3)


def test_the_night_is_longer_in_december_than_in_june_at_20_degrees_north() -> None:
    dec = sunrise_sunset(datetime(2026, 12, 21, 12, tzinfo=ICT).timestamp(), *NAM_DINH)
    jun = sunrise_sunset(datetime(2026, 6, 21, 12, tzinfo=ICT).timestamp(), *NAM_DINH)
    day_dec, day_jun = (dec[1] - dec[0]) / 3600, (jun[1] - jun[0]) / 3600
    assert 10.7 < day_dec < 11.2 and 13.1 < day_jun < 13.6  # domain-facts §4.3: ~12.5 h vs ~10.5 h lit


def test_times_belong_to_the_local_day_that_contains_t() -> None:
    # 23:30 local on 1 Mar is 16:30 UTC of the same date; 00:30 local on 2 Mar is still 1 Mar UTC.
    late = datetime(2026, 3, 1, 23, 30, tzinfo=ICT).timestamp()
    early = datetime(2026, 3, 2, 0, 30, tzinfo=ICT).timestamp()
    assert local_day(early) == local_day(late) + 1
    r1, s1 = sunrise_sunset(late, *NAM_DINH)
    r2, s2 = sunrise_sunset(early, *NAM_DINH)
    assert _local(r1).day == 1 and _local(s1).day == 1
    assert _local(r2).day == 2 and _local(s2).day == 2
    assert 86_000 < r2 - r1 < 86_800


def test_the_utc_offset_only_picks_the_day_not_the_instants() -> None:
    t = datetime(2026, 9, 10, 12, tzinfo=UTC).timestamp()
    assert sunrise_sunset(t, *NAM_DINH, 7.0) == pytest.approx(sunrise_sunset(t, *NAM_DINH, 8.0), abs=90)


def test_dark_hours_span_sunset_plus_margin_to_sunrise_minus_margin() -> None:
    t = datetime(2026, 12, 15, 12, tzinfo=ICT).timestamp()
    rise, sset = sunrise_sunset(t, *NAM_DINH)
    nxt_rise, _ = sunrise_sunset(t + 86_400, *NAM_DINH)
    dark = DarkHours(*NAM_DINH, after_sunset_s=1200, before_sunrise_s=900)
    assert not dark.dark(sset + 1199)
    assert dark.dark(sset + 1200)
    assert dark.dark(nxt_rise - 901)
    assert not dark.dark(nxt_rise - 900)
    assert dark.dark(rise - 901) and not dark.dark(rise - 899)
    assert not dark.dark(t)  # noon
    # Going back in time works too (the cache is per local day).
    assert dark.dark(sset + 3600) and not dark.dark(t - 86_400)
