"""The SensorThings request grammar: what it reads, and that any other input is a
StaQueryError (a 400), never another exception (a 500)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ops_center.adapters.observations import Condition, Order
from ops_center.api.sta.query import (
    COLLECTIONS,
    Path,
    StaQueryError,
    parse_options,
    parse_path,
)


def test_paths_with_quoted_ids_and_navigation() -> None:
    assert parse_path("Things") == Path("Things")
    assert parse_path("Datastreams('tn-aq-01:pm25')/Observations") == Path(
        "Datastreams", "tn-aq-01:pm25", "Observations")
    assert parse_path("Things('it''s')").id == "it's"
    assert parse_path("Observations('a:b:2026-11-28T05:00:00Z')/Datastream").target == "Datastreams"


def test_options_of_the_supported_subset() -> None:
    o = parse_options({"$filter": ["phenomenonTime ge 2026-11-28T05:00:00+07:00 and 10.5 lt result"],
                       "$orderby": ["result desc,phenomenonTime"], "$top": ["5000"], "$skip": ["3"],
                       "$count": ["true"], "other": ["ignored"]}, "Observations")
    assert o.filter == (Condition("time", "ge", datetime(2026, 11, 27, 22, tzinfo=UTC)),
                        Condition("result", "gt", 10.5))
    assert o.orderby == (Order("result", True), Order("time", False))
    assert (o.top, o.skip, o.count) == (1000, 3, True)  # $top past the maximum: paged
    e = parse_options({"$expand": ["Datastreams($top=2;$orderby=name desc),Locations"]}, "Things").expand
    assert [(x.name, x.options.top) for x in e] == [("Datastreams", 2), ("Locations", 100)]


@pytest.mark.parametrize("opts", [
    {"$filter": ["result gt 1 or result lt 2"]}, {"$filter": ["result eq '1'"]},
    {"$top": ["1", "2"]}, {"$format": ["json"]}, {"$expand": ["Datastream/Thing"]},
])
def test_outside_the_subset_is_a_query_error(opts: dict[str, list[str]]) -> None:
    with pytest.raises(StaQueryError):
        parse_options(opts, "Observations")


@settings(max_examples=400, deadline=None)
@given(path=st.text(max_size=60), name=st.sampled_from(["$filter", "$orderby", "$expand", "$top", "$skip",
                                                         "$count"]),
       value=st.text(max_size=80), collection=st.sampled_from(COLLECTIONS))
def test_any_input_parses_or_is_a_query_error(path: str, name: str, value: str, collection: str) -> None:
    for call in (lambda: parse_path(path), lambda: parse_options({name: [value]}, collection)):
        try:
            call()
        except StaQueryError as exc:
            assert exc.vi and exc.en
