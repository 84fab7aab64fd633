"""A test-side expander of what Grafana does to a PostgreSQL panel's SQL before running it,
so that the dashboards' queries can run against a real TimescaleDB without a Grafana.

1. Template variables (frontend, Grafana docs "Variables" / "SQL data sources"): user
   variables ``$name``, ``${name}``, ``[[name]]``; a single value is inserted with its
   single quotes doubled (the query puts it inside quotes). Global variables
   ``$__interval``, ``$__interval_ms``, ``$__from``, ``$__to`` (epoch ms).
2. Macros (backend, Grafana docs "PostgreSQL data source", Macros; the expansions follow
   grafana-postgresql-datasource's macros.go):

   $__time(col)               col AS "time"
   $__timeEpoch(col)          extract(epoch from col) as "time"
   $__timeFilter(col)         col BETWEEN '<from RFC3339>' AND '<to RFC3339>'
   $__timeFrom() / $__timeTo()  '<from>' / '<to>'
   $__timeGroup(col, iv)      time_bucket('<s>s',col) with the data source's TimescaleDB
                              option, else floor(extract(epoch from col)/<s>)*<s>
   $__timeGroupAlias(col, iv) the same, AS "time"
   $__unixEpochFilter(col)    col >= <from s> AND col <= <to s>
   $__unixEpochGroup(col, iv) floor((col)/<s>)*<s>

An unknown macro is an error, as it is in Grafana. ``$__interval`` is chosen like Grafana's
(range / max data points, rounded up to a "nice" interval; simplified table below).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_NICE_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_MACRO = re.compile(r"\$__(\w+)\(([^()]*)\)")


def format_interval(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds * 1000)}ms"


def parse_interval(text: str) -> float:
    m = re.fullmatch(r"\s*['\"]?(\d+(?:\.\d+)?)(ms|s|m|h|d|w)['\"]?\s*", text)
    if m is None:
        raise ValueError(f"not an interval: {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def auto_interval(start: datetime, end: datetime, max_data_points: int = 1000) -> float:
    raw = (end - start).total_seconds() / max_data_points
    return float(next((s for s in _NICE_S if s >= raw), _NICE_S[-1]))


def _rfc3339(t: datetime) -> str:
    # Go's time.RFC3339Nano in UTC: no trailing zeros in the fraction, "Z".
    t = t.astimezone(UTC)
    text = t.strftime("%Y-%m-%dT%H:%M:%S")
    if t.microsecond:
        text += ("." + f"{t.microsecond:06d}").rstrip("0")
    return text + "Z"


def expand(
    sql: str,
    *,
    start: datetime,
    end: datetime,
    variables: dict[str, str] | None = None,
    interval_s: float | None = None,
    timescaledb: bool = True,
) -> str:
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("aware datetimes only")
    interval = interval_s if interval_s is not None else auto_interval(start, end)
    # 1. Variables (the longest names first: $__interval_ms before $__interval).
    glob = {
        "__interval_ms": str(int(interval * 1000)),
        "__interval": format_interval(interval),
        "__from": str(int(start.timestamp() * 1000)),
        "__to": str(int(end.timestamp() * 1000)),
    }
    values = {**glob, **{k: v.replace("'", "''") for k, v in (variables or {}).items()}}
    for name in sorted(values, key=len, reverse=True):
        v = values[name]
        sql = sql.replace("${" + name + "}", v).replace("[[" + name + "]]", v)
        sql = re.sub(r"\$" + re.escape(name) + r"(?![\w])", v.replace("\\", "\\\\"), sql)
    leftover = re.search(r"\$(?!__\w+\()(\w+)|\[\[\w+\]\]", sql)
    if leftover:
        raise KeyError(f"undefined template variable: {leftover.group(0)}")

    # 2. Macros.
    frm, to = _rfc3339(start), _rfc3339(end)

    def group(args: list[str]) -> str:
        if len(args) < 2:
            raise ValueError("$__timeGroup needs a column and an interval")
        s = parse_interval(args[1])
        if timescaledb:
            return f"time_bucket('{s:.0f}s',{args[0]})"
        return f"floor(extract(epoch from {args[0]})/{s:g})*{s:g}"

    def macro(m: re.Match[str]) -> str:
        name = m.group(1)
        args = [a.strip() for a in m.group(2).split(",")] if m.group(2).strip() else []
        if name == "time":
            return f'{args[0]} AS "time"'
        if name == "timeEpoch":
            return f'extract(epoch from {args[0]}) as "time"'
        if name == "timeFilter":
            return f"{args[0]} BETWEEN '{frm}' AND '{to}'"
        if name == "timeFrom":
            return f"'{frm}'"
        if name == "timeTo":
            return f"'{to}'"
        if name == "timeGroup":
            return group(args)
        if name == "timeGroupAlias":
            return group(args) + ' AS "time"'
        if name == "unixEpochFilter":
            return f"{args[0]} >= {int(start.timestamp())} AND {args[0]} <= {int(end.timestamp())}"
        if name == "unixEpochGroup":
            s = parse_interval(args[1])
            return f"floor(({args[0]})/{s:g})*{s:g}"
        raise ValueError(f"unknown macro: $__{name}")

    out = _MACRO.sub(macro, sql)
    if "$__" in out:
        raise ValueError(f"unexpanded macro in: {out}")
    return out


def window(hours: float, end: datetime | None = None) -> tuple[datetime, datetime]:
    end = end or datetime.now(UTC)
    return end - timedelta(hours=hours), end
