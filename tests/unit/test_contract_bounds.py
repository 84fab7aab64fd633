"""The bounds every boundary shares (contract/bounds.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from contract.bounds import (
    MAX_INT,
    MAX_TIME,
    MIN_TIME,
    SAFE_TEXT_PATTERN,
    is_safe_text,
    safe_text,
    text_problem,
    time_problem,
)


@pytest.mark.parametrize("bad", ["a\x00b", "\x01", "x\x1b[31m", "\x7f", "\x85", "\ud800", "a\rb"])
def test_control_characters_and_lone_surrogates_are_refused(bad: str) -> None:
    assert not is_safe_text(bad)
    assert text_problem(bad, 100) is not None
    assert is_safe_text(safe_text(bad))
    safe_text(bad).encode("utf-8")  # storable everywhere


@pytest.mark.parametrize("good", ["", "Ngập nặng tại phố Hàng Tiện", "tab\tand\nnewline", "🌧️ mưa to"])
def test_ordinary_vietnamese_text_with_tab_and_newline_is_safe(good: str) -> None:
    assert is_safe_text(good)
    assert text_problem(good, 100) is None
    assert safe_text(good) == good


def test_safe_text_escapes_visibly_and_cuts_to_length() -> None:
    assert safe_text("a\x00b\ud800") == "a\\x00b\\ud800"
    assert safe_text("x" * 50, 10) == "x" * 9 + "…"
    assert text_problem("x" * 11, 10) == "longer than 10 characters (11)"


def test_pattern_agrees_with_the_function() -> None:
    import re

    pat = re.compile(SAFE_TEXT_PATTERN)
    for s in ["ok", "a\x00", "\t\n", "\ud800", "é"]:
        assert bool(pat.match(s)) == is_safe_text(s)


def test_times_outside_the_representable_range_are_refused_without_raising() -> None:
    year1 = datetime(1, 1, 1, tzinfo=timezone(timedelta(minutes=1)))  # UTC instant is in year 0
    assert time_problem(year1) is not None
    west = timezone(timedelta(hours=-23, minutes=-59))
    assert time_problem(datetime(9999, 12, 31, tzinfo=west)) is not None
    assert time_problem(MIN_TIME - timedelta(seconds=1)) is not None
    assert time_problem(MAX_TIME) is not None
    assert time_problem(datetime(2026, 12, 7, tzinfo=UTC)) is None
    assert time_problem(MIN_TIME) is None
    assert time_problem(datetime(2026, 1, 1)) == "time without a UTC offset"


def test_max_int_is_signed_64_bit() -> None:
    assert MAX_INT == 9223372036854775807
