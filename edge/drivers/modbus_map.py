"""The Modbus register map, without I/O: which requests to send, and what their words mean.

Registers of one unit and table that lie close together are read in one request (at most
125 registers, the protocol's limit for reading holding/input registers); a value is
``raw * scale + offset`` with 32-bit values as two big-endian words (``word_order: little``
swaps the words, not the bytes). A value outside the catalog's physical bounds is kept with
``quality: bad``; a value that is not a number (a float32 NaN or infinity) is no value at all.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from contract.catalog import METRICS
from contract.models import Quality
from contract.registry import ModbusRegister

MAX_REGISTERS_PER_REQUEST = 125
# Unused registers read to save a round trip: a request may span a gap this wide.
MAX_GAP = 4
# The Modbus exception "illegal data address": a device that refuses to be read across the
# gaps of its map gets gap-free requests from then on.
ILLEGAL_DATA_ADDRESS = 2


@dataclass(frozen=True, slots=True)
class Item:
    """One register (one or two words) of one sensor."""

    sensor: str
    register: ModbusRegister

    @property
    def address(self) -> int:
        return self.register.address

    @property
    def end(self) -> int:
        """One past the last word."""
        return self.register.address + self.register.words


@dataclass(slots=True)
class Request:
    table: str
    unit: int
    start: int
    count: int
    items: list[Item] = field(default_factory=list)

    @property
    def has_gaps(self) -> bool:
        covered: set[int] = set()
        for it in self.items:
            covered.update(range(it.address, it.end))
        return len(covered) < self.count


def plan(unit: int, items: Iterable[tuple[str, ModbusRegister]], *, max_gap: int = MAX_GAP) -> list[Request]:
    """As few requests as the map allows for ``items`` of one unit (both tables)."""
    out: list[Request] = []
    by_table: dict[str, list[Item]] = {}
    for sensor, reg in items:
        by_table.setdefault(reg.table, []).append(Item(sensor, reg))
    for table in sorted(by_table):
        cur: Request | None = None
        for it in sorted(by_table[table], key=lambda i: (i.address, i.end)):
            if cur is not None:
                end = max(cur.start + cur.count, it.end)
                near = it.address - (cur.start + cur.count) <= max_gap
                if near and end - cur.start <= MAX_REGISTERS_PER_REQUEST:
                    cur.count = end - cur.start
                    cur.items.append(it)
                    continue
            cur = Request(table=table, unit=unit, start=it.address, count=it.end - it.address, items=[it])
            out.append(cur)
    return out


def split_gaps(req: Request) -> list[Request]:
    """``req`` as requests that read only mapped registers."""
    return plan(req.unit, ((it.sensor, it.register) for it in req.items), max_gap=0)


def decode(reg: ModbusRegister, words: Sequence[int]) -> float | None:
    """The value of ``reg`` from its words; None when it is not a finite number."""
    t = reg.type
    if t == "uint16":
        raw: float = words[0]
    elif t == "int16":
        raw = words[0] - 0x10000 if words[0] & 0x8000 else words[0]
    else:
        hi, lo = (words[0], words[1]) if reg.word_order == "big" else (words[1], words[0])
        u = (hi << 16) | lo
        if t == "uint32":
            raw = u
        elif t == "int32":
            raw = u - 0x1_0000_0000 if u & 0x8000_0000 else u
        else:
            raw = struct.unpack(">f", struct.pack(">I", u))[0]
    value = raw * reg.scale + reg.offset
    return value if math.isfinite(value) else None


def quality_of(metric: str, value: float) -> Quality:
    return "good" if METRICS[metric].in_bounds(value) else "bad"


def values_of(req: Request, registers: Sequence[int]) -> list[tuple[Item, float | None]]:
    """Each item of ``req`` with its value from the words the device answered."""
    out: list[tuple[Item, float | None]] = []
    for it in req.items:
        lo = it.address - req.start
        words = registers[lo:lo + it.register.words]
        out.append((it, decode(it.register, words) if len(words) == it.register.words else None))
    return out
