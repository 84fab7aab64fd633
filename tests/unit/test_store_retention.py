"""Retention policy: cutoffs from days, nothing deleted unless configured."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from ingest.retention import RetentionPolicy, apply_retention
from ingest.stores.memory import MemoryStore
from ingest.stores.records import RetentionResult
from tests.unit.test_store_contract import T0, batch


class Recorder:
    def __init__(self) -> None:
        self.kwargs: dict[str, datetime | None] = {}

    def apply_retention(self, **kwargs: datetime | None) -> RetentionResult:
        self.kwargs = kwargs
        return RetentionResult()


def test_cutoffs_are_days_before_now_and_none_keeps_forever() -> None:
    rec = Recorder()
    apply_retention(rec, RetentionPolicy(readings_days=30, dead_letters_days=0.5), T0)
    assert rec.kwargs == {"readings_before": T0 - timedelta(days=30), "rollup_1m_before": None,
                          "rollup_1h_before": None, "dead_letters_before": T0 - timedelta(hours=12)}


def test_policy_refuses_non_positive_days_and_naive_now() -> None:
    with pytest.raises(ValueError, match="readings_days"):
        RetentionPolicy(readings_days=0)
    with pytest.raises(ValueError, match="aware"):
        apply_retention(Recorder(), RetentionPolicy(), T0.replace(tzinfo=None))


def test_memory_store_applies_it() -> None:
    s = MemoryStore()
    s.write([batch(1, ("tn-aq-01", "pm25", -86400 * 3, 1.0), ("tn-aq-01", "pm25", 0, 2.0))], [])
    assert apply_retention(s, RetentionPolicy(readings_days=1), T0).readings_rows == 1
