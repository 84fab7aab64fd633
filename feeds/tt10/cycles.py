"""TT 10/2021 cycles, files and lines: pure functions of values (no I/O, no clock).

docs/contract.md "Regulatory feed": for every 5-minute cycle, aligned to :00, :05, ... Vietnam time,
a station produces one file ``<prefix>_<STATION>_<YYYYMMDDhhmmss>.txt`` (the cycle's time,
Vietnam time) with one tab-separated line per parameter
``<symbol>\\t<value>\\t<unit>\\t<YYYYMMDDhhmmss>\\t<status>``. A cycle is labelled by the time it
ends: the file for T holds the means of the readings with T - 5 min <= time < T, and each
line's time field equals T. Status (docs/domain-facts.md §2.5): ``00`` measuring, ``01`` calibrating,
``02`` device error; a cycle whose readings are mixed takes the worst (02 over 01 over 00).

Symbols are written exactly as TT 10/2021 (Phụ lục 15, Bảng 34) lists them, case included
(docs/domain-facts.md §2.5). Units are ASCII, as station data loggers write them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from types import MappingProxyType
from typing import Final, Literal

from contract.registry import Registry

CYCLE: Final = timedelta(minutes=5)
_CYCLE_S: Final = 300
# Vietnam time (ICT) is UTC+7 all year (no daylight saving since 1975): a fixed offset, so
# the feed needs no tz database. Five minutes divide the offset, so cycles aligned in UTC are
# aligned in Vietnam time as well.
VIETNAM: Final = timezone(timedelta(hours=7), "ICT")
STAMP_FORMAT: Final = "%Y%m%d%H%M%S"

Status = Literal["00", "01", "02"]
MEASURING: Final[Status] = "00"
CALIBRATING: Final[Status] = "01"
DEVICE_ERROR: Final[Status] = "02"

# Reading quality (contract/models.py ``Quality``) -> TT 10 status. A sensor in maintenance is
# not measuring and not broken: like calibration, the receiver must not take it as a value.
_STATUS_OF_QUALITY: Final[Mapping[str, Status]] = MappingProxyType({
    "good": MEASURING,
    "suspect": MEASURING,
    "calibrating": CALIBRATING,
    "maintenance": CALIBRATING,
    "bad": DEVICE_ERROR,
})


@dataclass(frozen=True, slots=True)
class Parameter:
    symbol: str  # as TT 10/2021 lists it
    unit: str


# Catalog metric (contract/catalog.py) -> TT 10/2021 parameter. Wastewater: the outlet's
# discharge (NĐ 08/2022 keeps NĐ 40/2019's list: flow, temperature, pH, TSS, COD, NH4+);
# the inflow is the plant's input, not the discharge, and is not sent under the outlet's
# station code. Stack: dust, SO2, NOx (as NO2, QCVN 19), CO, excess O2, temperature, flow.
PARAMETERS: Final[Mapping[str, Parameter]] = MappingProxyType({
    "ww_flow_out_m3h": Parameter("Flow", "m3/h"),
    "ww_temp_c": Parameter("Temp", "oC"),
    "ww_ph": Parameter("pH", "pH"),
    "ww_tss": Parameter("TSS", "mg/L"),
    "ww_cod": Parameter("COD", "mg/L"),
    "ww_nh4": Parameter("NH4", "mg/L"),
    "stack_flow_m3h": Parameter("Flow", "m3/h"),
    "stack_temp_c": Parameter("Temp", "oC"),
    "stack_dust": Parameter("PM", "mg/Nm3"),
    "stack_so2": Parameter("SO2", "mg/Nm3"),
    "stack_nox": Parameter("NOx", "mg/Nm3"),
    "stack_co": Parameter("CO", "mg/Nm3"),
    "stack_o2_pct": Parameter("O2", "%"),
})

# What may appear in a file name: letters, digits, '-' (and '_' between the parts).
_NAME_PART = re.compile(r"^[A-Za-z0-9-]+(?:_[A-Za-z0-9-]+)*$")
_STATION = re.compile(r"^[A-Za-z0-9-]+$")


@dataclass(frozen=True, slots=True)
class Station:
    """A sensor that is a continuous monitoring station (``attrs.tt10_station``)."""

    site: str
    gateway: str
    sensor: str
    prefix: str  # <PROVINCE>_<FACILITY>
    code: str  # <STATION>
    metrics: tuple[str, ...]  # the sensor's metrics that have a TT 10 parameter, in line order

    @property
    def key(self) -> str:
        return f"{self.prefix}_{self.code}"


class StationError(ValueError):
    """A sensor's ``tt10_*`` attributes cannot name a station (the message says which)."""


def stations_of(registry: Registry) -> list[Station]:
    """Every sensor of ``registry`` with ``attrs.tt10_station``, in registry order."""
    out: list[Station] = []
    seen: dict[str, str] = {}
    for site, gw in registry.iter_gateways():
        for sensor in gw.sensors:
            code = sensor.attrs.get("tt10_station")
            if code is None:
                continue
            prefix = sensor.attrs.get("tt10_prefix")
            if not isinstance(code, str) or not _STATION.match(code):
                raise StationError(f"sensor {sensor.id}: tt10_station {code!r} must be letters, digits, '-'")
            if not isinstance(prefix, str) or not _NAME_PART.match(prefix):
                raise StationError(
                    f"sensor {sensor.id}: tt10_prefix {prefix!r} must be set, as <PROVINCE>_<FACILITY> "
                    "(letters, digits, '-', parts joined by '_')"
                )
            metrics = tuple(m for m in sensor.metrics if m in PARAMETERS)
            if not metrics:
                raise StationError(f"sensor {sensor.id}: none of its metrics has a TT 10/2021 parameter")
            station = Station(site.id, gw.id, sensor.id, prefix, code, metrics)
            if station.key in seen:
                raise StationError(
                    f"sensors {seen[station.key]} and {sensor.id} are both station {station.key}")
            seen[station.key] = sensor.id
            out.append(station)
    return out


# --- cycles --------------------------------------------------------------------------------


def _aware(t: datetime) -> datetime:
    if t.tzinfo is None:
        raise ValueError(f"naive datetime {t!r}: times must be aware")
    return t


def _from_epoch(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def label_of(t: datetime) -> datetime:
    """The label (end) of the cycle ``t`` belongs to: T with T - 5 min <= t < T."""
    ts = _aware(t).timestamp()
    return _from_epoch((math.floor(ts) // _CYCLE_S) * _CYCLE_S + _CYCLE_S)


def last_ended(now: datetime) -> datetime:
    """The label of the newest cycle that has ended at ``now`` (its end is <= now)."""
    ts = _aware(now).timestamp()
    return _from_epoch((math.floor(ts) // _CYCLE_S) * _CYCLE_S)


def labels_between(start: datetime, end: datetime) -> list[datetime]:
    """The cycle labels in (start, end], oldest first (``export``'s range)."""
    first = label_of(start)  # the first aligned time strictly after start
    last = last_ended(end)  # the last aligned time at or before end
    out: list[datetime] = []
    t = first
    while t <= last:
        out.append(t)
        t += CYCLE
    return out


def stamp(label: datetime) -> str:
    """``YYYYMMDDhhmmss`` of ``label`` in Vietnam time."""
    return _aware(label).astimezone(VIETNAM).strftime(STAMP_FORMAT)


def parse_stamp(text: str) -> datetime:
    """The UTC time of a ``YYYYMMDDhhmmss`` Vietnam-time stamp."""
    if len(text) != 14 or not text.isdigit():
        raise ValueError(f"not a TT 10 time stamp: {text!r}")
    return datetime.strptime(text, STAMP_FORMAT).replace(tzinfo=VIETNAM).astimezone(UTC)


def file_name(station: Station, label: datetime) -> str:
    return f"{station.key}_{stamp(label)}.txt"


def label_of_file(name: str) -> datetime:
    """The cycle label in a file name ``..._<YYYYMMDDhhmmss>.txt``."""
    if not name.endswith(".txt") or len(name) < 19:
        raise ValueError(f"not a TT 10 file name: {name!r}")
    return parse_stamp(name[-18:-4])


# --- lines ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reading:
    time: datetime
    sensor: str
    metric: str
    value: float
    quality: str


@dataclass(frozen=True, slots=True)
class Line:
    symbol: str
    value: float
    unit: str
    label: datetime
    status: Status

    def render(self) -> str:
        return "\t".join((self.symbol, format_value(self.value), self.unit, stamp(self.label), self.status))


@dataclass(frozen=True, slots=True)
class CycleFile:
    station: Station
    label: datetime
    lines: tuple[Line, ...]

    @property
    def name(self) -> str:
        return file_name(self.station, self.label)

    def render(self) -> bytes:
        return "".join(line.render() + "\n" for line in self.lines).encode("ascii")


def format_value(value: float) -> str:
    """A mean with at most 3 decimals, no exponent, no trailing zeros (``7.12``, ``35``)."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def worst_status(qualities: Iterable[str]) -> Status:
    """02 over 01 over 00; an unknown quality counts as a device error."""
    worst: Status = MEASURING
    for q in qualities:
        status = _STATUS_OF_QUALITY.get(q, DEVICE_ERROR)
        worst = max(worst, status)  # "02" > "01" > "00"
    return worst


def build_cycles(station: Station, readings: Iterable[Reading],
                 labels: Sequence[datetime] | None = None) -> Iterator[CycleFile]:
    """The files of ``station`` from its readings, oldest first: per cycle and parameter the
    mean of the readings with T - 5 min <= time < T and the worst status. A cycle without any
    reading of the station has no file (nothing was measured). ``labels``: only these."""
    wanted = None if labels is None else set(labels)
    acc: dict[datetime, dict[str, tuple[float, int, list[str]]]] = {}
    metrics = set(station.metrics)
    for r in readings:
        if r.sensor != station.sensor or r.metric not in metrics:
            continue
        label = label_of(r.time)
        if wanted is not None and label not in wanted:
            continue
        per = acc.setdefault(label, {})
        total, count, qualities = per.get(r.metric, (0.0, 0, []))
        qualities.append(r.quality)
        per[r.metric] = (total + r.value, count + 1, qualities)
    for label in sorted(acc):
        per = acc[label]
        lines = []
        for metric in station.metrics:
            if metric not in per:
                continue
            total, count, qualities = per[metric]
            p = PARAMETERS[metric]
            lines.append(Line(p.symbol, total / count, p.unit, label, worst_status(qualities)))
        yield CycleFile(station, label, tuple(lines))


def parse_lines(text: str) -> list[tuple[str, float, str, datetime, Status]]:
    """The lines of a file (for checks and tests): (symbol, value, unit, time, status)."""
    out: list[tuple[str, float, str, datetime, Status]] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        parts = raw.split("\t")
        if len(parts) != 5 or parts[4] not in ("00", "01", "02"):
            raise ValueError(f"line {n}: not <symbol>\\t<value>\\t<unit>\\t<time>\\t<status>: {raw!r}")
        status: Status = "00" if parts[4] == "00" else "01" if parts[4] == "01" else "02"
        out.append((parts[0], float(parts[1]), parts[2], parse_stamp(parts[3]), status))
    return out
