"""WatermarkTracker: contiguous, never past a missing seq, bounded."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.watermarks import WatermarkTracker


def test_watermark_is_the_highest_contiguous_handled_seq() -> None:
    t = WatermarkTracker()
    for seq in (1, 2, 4, 5):
        t.mark("gw", seq)
    assert t.watermark("gw") == 2 and t.gaps() == {"gw": 2}
    t.mark("gw", 3)
    assert t.watermark("gw") == 5 and t.gaps() == {}
    assert t.take_changed() == {"gw": 5} and t.take_changed() == {}


def test_restored_watermarks_ignore_old_seqs() -> None:
    t = WatermarkTracker({"gw": 10})
    t.mark("gw", 3)
    assert t.watermark("gw") == 10 and t.take_changed() == {}
    t.mark("gw", 11)
    assert t.take_changed() == {"gw": 11}


def test_dropped_through_advances_past_the_missing_seqs_and_joins_pending_ones() -> None:
    t = WatermarkTracker({"gw": 2})
    t.mark("gw", 9)
    t.mark("gw", 10)
    t.advance_to("gw", 8)
    assert t.watermark("gw") == 10
    t.advance_to("gw", 5)
    assert t.watermark("gw") == 10


def test_pending_is_bounded_and_overflow_only_holds_the_watermark_back() -> None:
    t = WatermarkTracker(max_pending=16)
    for seq in range(3, 40):
        t.mark("gw", seq)
    assert t.pending("gw") == 16 and t.overflowed == 37 - 16
    t.mark("gw", 1)
    t.mark("gw", 2)
    assert t.watermark("gw") == 18  # 3..18 remembered, 19.. forgotten: conservative
    for seq in range(19, 40):
        t.mark("gw", seq)
    assert t.watermark("gw") == 39


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=60), max_size=120), st.integers(min_value=0, max_value=30))
def test_watermark_never_passes_an_unhandled_seq(seqs: list[int], dropped: int) -> None:
    t = WatermarkTracker(max_pending=16)
    for s in seqs:
        t.mark("gw", s)
    t.advance_to("gw", dropped)
    handled = set(seqs) | set(range(1, dropped + 1))
    w = t.watermark("gw")
    assert all(s in handled for s in range(1, w + 1))
    assert w + 1 not in handled or t.overflowed > 0


def test_a_resend_below_the_watermark_asks_for_a_republish_not_a_save() -> None:
    t = WatermarkTracker({"gw": 10})
    t.mark("gw", 3)
    assert t.take_changed() == {} and t.take_resent() == {"gw": 10}
    assert t.take_resent() == {}
    t.mark("new", 0)  # nothing handled yet: nothing to publish
    assert t.take_resent() == {}
