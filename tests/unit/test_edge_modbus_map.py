"""The Modbus register map without I/O: request planning and value decoding."""

from __future__ import annotations

import math
import struct

import pytest

from contract.registry import ModbusRegister
from edge.drivers.modbus_map import MAX_REGISTERS_PER_REQUEST, decode, plan, quality_of, split_gaps, values_of


def reg(address: int, type_: str = "uint16", **kw: object) -> ModbusRegister:
    return ModbusRegister.model_validate({"metric": "water_level_cm", "address": address, "type": type_,
                                          **kw})


def f32_words(x: float) -> list[int]:
    u = struct.unpack(">I", struct.pack(">f", x))[0]
    return [u >> 16, u & 0xFFFF]


@pytest.mark.parametrize(
    ("type_", "words", "order", "value"),
    [
        ("uint16", [65535], "big", 65535),
        ("int16", [65535], "big", -1),
        ("int16", [0x8000], "big", -32768),
        ("uint32", [0x0001, 0x0002], "big", 0x0001_0002),
        ("uint32", [0x0002, 0x0001], "little", 0x0001_0002),
        ("int32", [0xFFFF, 0xFFFE], "big", -2),
        ("int32", [0xFFFE, 0xFFFF], "little", -2),
        ("float32", f32_words(12.5), "big", 12.5),
        ("float32", f32_words(12.5)[::-1], "little", 12.5),
    ],
)
def test_decode_types_and_word_order(type_: str, words: list[int], order: str, value: float) -> None:
    assert decode(reg(0, type_, word_order=order), words) == value


def test_scale_and_offset() -> None:
    assert decode(reg(0, "int16", scale=0.1, offset=-5), [1234]) == pytest.approx(118.4)


def test_a_float_that_is_not_a_number_is_no_value() -> None:
    assert decode(reg(0, "float32"), f32_words(math.nan)) is None
    assert decode(reg(0, "float32"), f32_words(math.inf)) is None


def test_out_of_physical_bounds_is_bad_quality() -> None:
    assert quality_of("water_level_cm", 120) == "good"
    assert quality_of("water_level_cm", 301) == "bad"
    assert quality_of("water_level_cm", -1) == "bad"


def test_near_registers_share_a_request_per_table() -> None:
    items = [("a", reg(0)), ("a", reg(1, "int32")), ("b", reg(6)), ("b", reg(40)),
             ("c", reg(3, table="input")), ("c", reg(4, table="input"))]
    reqs = plan(3, items)
    assert [(r.table, r.start, r.count) for r in reqs] == [("holding", 0, 7), ("holding", 40, 1),
                                                           ("input", 3, 2)]
    assert all(r.unit == 3 for r in reqs)
    assert reqs[0].has_gaps and not reqs[2].has_gaps
    assert [(r.start, r.count) for r in split_gaps(reqs[0])] == [(0, 3), (6, 1)]


def test_a_request_never_exceeds_125_registers() -> None:
    items = [("s", reg(a)) for a in range(0, 400, 2)]
    reqs = plan(1, items)
    assert all(r.count <= MAX_REGISTERS_PER_REQUEST for r in reqs)
    assert sum(len(r.items) for r in reqs) == 200
    assert len(reqs) == 4


def test_values_of_a_short_answer_are_none() -> None:
    [req] = plan(1, [("s", reg(0)), ("s", reg(1, "float32"))])
    got = values_of(req, [7, *f32_words(1.5)])
    assert [v for _, v in got] == [7, 1.5]
    assert [v for _, v in values_of(req, [7, 1])] == [7, None]
