"""SQL for the panels, in the dialect of Grafana's PostgreSQL data source: its macros
(``$__timeFilter(col)``, ``$__timeGroup(col, $__interval)``, ``$__timeFrom()``,
``$__timeTo()``) and template variables (``'$site'``: a single-valued variable is inserted
with its quotes doubled, so it goes inside quotes, Grafana docs "Variables" for SQL data
sources). Only the contract's tables and columns are read (docs/contract.md, Store schema).

Series read the raw ``readings`` for short ranges and the rollups for long ones: the three
branches of one ``UNION ALL`` are guarded by the range's length, a condition on constants
that PostgreSQL evaluates once (a one-time filter), so only one branch scans anything.
The rollups hold only readings of quality ``good``/``suspect``; the raw branch filters the
same way, so a series does not change when the range crosses a boundary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

RAW_MAX: Final = "6 hours"  # up to this range: raw readings
MINUTE_MAX: Final = "3 days"  # up to this range: readings_1m; beyond: readings_1h
GOOD: Final = "('good', 'suspect')"
_RANGE: Final = "($__timeTo()::timestamptz - $__timeFrom()::timestamptz)"


def literal_list(values: Sequence[str]) -> str:
    for v in values:
        if not v.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"not an identifier-like value: {v!r}")
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


def series(
    *,
    metrics: Sequence[str],
    site: str,
    label: str = "r.sensor",
    value: str = "{mean}",
    join: str = "",
    extra_where: str = "",
    extra_group: str = "",
    ordered: bool = True,
) -> str:
    """A time series (``time``, ``metric``, ``value``) of the per-bucket mean of ``metrics``.

    ``site`` is a SQL condition on ``r.site`` (``= '$site'`` or ``IS NOT NULL``);
    ``value`` may transform ``{mean}`` (e.g. a ratio to a limit from ``join``);
    ``label`` names each series (Grafana uses the ``metric`` column as the series name).
    """
    where_m = f"r.metric IN {literal_list(metrics)}"
    group = "1, 2" + (f", {extra_group}" if extra_group else "")
    extra = f" AND {extra_where}" if extra_where else ""
    branches = []
    for table, col, mean, guard in (
        ("readings", "time", "avg(r.value)", f"{_RANGE} <= interval '{RAW_MAX}'"),
        ("readings_1m", "bucket", "sum(r.sum) / sum(r.count)",
         f"{_RANGE} > interval '{RAW_MAX}' AND {_RANGE} <= interval '{MINUTE_MAX}'"),
        ("readings_1h", "bucket", "sum(r.sum) / sum(r.count)", f"{_RANGE} > interval '{MINUTE_MAX}'"),
    ):
        quality = f" AND r.quality IN {GOOD}" if table == "readings" else ""
        branches.append(
            f"SELECT $__timeGroup(r.{col}, $__interval) AS \"time\", {label} AS metric, "
            f"{value.format(mean=mean)} AS value\n"
            f"FROM {table} r{(' ' + join) if join else ''}\n"
            f"WHERE $__timeFilter(r.{col}) AND r.site {site} AND {where_m}{quality}{extra}\n"
            f"  AND {guard}\n"
            f"GROUP BY {group}"
        )
    return "\nUNION ALL\n".join(branches) + ("\nORDER BY 1, 2" if ordered else "")


def latest(*, metric: str, site: str, label: str = "s.name_vi", extra_cols: str = "") -> str:
    """The last reading of ``metric`` of each active sensor of ``site`` at the range's end,
    by the readings' unique index (sensor, metric, time): one index probe per sensor."""
    return (
        f"SELECT {label} AS sensor, l.value{(', ' + extra_cols) if extra_cols else ''}\n"
        "FROM sensors s\n"
        "CROSS JOIN LATERAL (SELECT r.time, r.value FROM readings r\n"
        f"  WHERE r.sensor = s.id AND r.metric = '{metric}' AND r.time <= $__timeTo()\n"
        "    AND r.time > $__timeTo()::timestamptz - interval '1 day'\n"
        "  ORDER BY r.time DESC LIMIT 1) l\n"
        f"WHERE s.site {site} AND s.active AND '{metric}' = ANY (s.metrics)\n"
        "ORDER BY 1"
    )


def limits_join(limits: Mapping[str, Mapping[str, float]], factors: tuple[str, str],
                default_column: str) -> str:
    """A JOIN giving ``lim.cmax`` for each reading's sensor and metric: the regulation's C of
    the sensor's column (attrs ``column``) times its two factors (attrs, 1 when missing)."""
    rows = ", ".join(
        f"('{metric}', '{column}', {value!r})"
        for metric, by_column in limits.items()
        for column, value in by_column.items()
    )
    f1, f2 = factors
    return (
        "JOIN sensors s ON s.id = r.sensor\n"
        f"JOIN (VALUES {rows}) AS c(metric, col, lim)\n"
        f"  ON c.metric = r.metric AND c.col = coalesce(s.attrs->>'column', '{default_column}')\n"
        f"CROSS JOIN LATERAL (SELECT c.lim * coalesce((s.attrs->>'{f1}')::float8, 1)"
        f" * coalesce((s.attrs->>'{f2}')::float8, 1) AS cmax) lim"
    )
