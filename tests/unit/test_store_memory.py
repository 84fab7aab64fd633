"""MemoryStore specifics: the outage switch that pipeline tests use."""

from __future__ import annotations

import pytest

from ingest.errors import StoreUnavailable
from ingest.stores.memory import MemoryStore
from tests.unit.test_store_contract import GW, T0, batch


def test_an_unavailable_memory_store_refuses_everything_until_it_is_back() -> None:
    s = MemoryStore()
    s.available = False
    assert s.ping() is False
    with pytest.raises(StoreUnavailable):
        s.write([batch(1, ("tn-aq-01", "pm25", 0, 1.0))], [])
    with pytest.raises(StoreUnavailable):
        s.save_watermarks({GW: 1})
    with pytest.raises(StoreUnavailable):
        s.record_dropped(GW, 1, T0)
    s.available = True
    assert s.write([batch(1, ("tn-aq-01", "pm25", 0, 1.0))], []).stored_batches == 1
    assert s.writes == 1
