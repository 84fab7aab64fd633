"""Dashboards as plain data: frozen dataclasses rendered to Grafana's dashboard JSON model.

A panel keeps, next to its SQL, the columns it expects back (``Query.columns``): the JSON
does not carry them, the tests use them to check every query against a real TimescaleDB.
Panel ids and grid positions are assigned at render time, in order, so they are unique and
stable; ``uid``s are written by hand and never derived from titles (a renamed dashboard keeps
its links, Grafana docs "Identifier (id) vs unique identifier (uid)", max 40 characters).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

PanelType = Literal["timeseries", "stat", "table", "bargauge", "barchart"]
Format = Literal["time_series", "table"]

# The data source every panel names; provisioned by `smartward dashboards export`.
DATASOURCE_UID: Final = "smartward-timescaledb"
DATASOURCE_TYPE: Final = "grafana-postgresql-datasource"
SCHEMA_VERSION: Final = 39
GRID_WIDTH: Final = 24
UID_MAX: Final = 40


def datasource_ref() -> dict[str, str]:
    return {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID}


@dataclass(frozen=True)
class Query:
    sql: str
    columns: tuple[str, ...]  # expected result columns; "time" first for time series
    format: Format = "time_series"


@dataclass(frozen=True)
class Step:
    """A threshold step: from ``value`` (None = the base step) on, ``color``."""

    value: float | None
    color: str


@dataclass(frozen=True)
class Panel:
    title: str  # "Tiếng Việt / English"
    type: PanelType
    queries: tuple[Query, ...]
    unit: str = ""
    steps: tuple[Step, ...] = ()
    description: str = ""
    width: int = 12
    height: int = 8
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class Variable:
    """A query variable whose options come from SQL (``__value``/``__text`` columns)."""

    name: str
    label: str
    sql: str
    columns: tuple[str, ...] = ("__value", "__text")


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    folder: str  # folder uid
    panels: tuple[Panel, ...]
    variables: tuple[Variable, ...] = ()
    tags: tuple[str, ...] = ()
    time_from: str = "now-24h"
    refresh: str = "1m"
    description: str = ""


@dataclass(frozen=True)
class Folder:
    uid: str
    title: str
    dashboards: tuple[Dashboard, ...] = field(default=())


def _thresholds(steps: tuple[Step, ...]) -> dict[str, Any]:
    if not steps:
        steps = (Step(None, "green"),)
    return {"mode": "absolute", "steps": [{"value": s.value, "color": s.color} for s in steps]}


def _field_config(panel: Panel) -> dict[str, Any]:
    defaults: dict[str, Any] = {"thresholds": _thresholds(panel.steps), "unit": panel.unit or "none"}
    if panel.min is not None:
        defaults["min"] = panel.min
    if panel.max is not None:
        defaults["max"] = panel.max
    if panel.type == "timeseries":
        # Limits drawn as lines on the graph (the regulation's value), not just colours.
        defaults["custom"] = {"thresholdsStyle": {"mode": "line+area" if panel.steps else "off"},
                              "spanNulls": False}
    if panel.type in ("stat", "bargauge", "table"):
        defaults["color"] = {"mode": "thresholds"}
    return {"defaults": defaults, "overrides": []}


def _options(panel: Panel) -> dict[str, Any]:
    if panel.type == "stat":
        return {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "colorMode": "background", "graphMode": "none", "textMode": "auto"}
    if panel.type == "bargauge":
        return {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": True},
                "orientation": "horizontal", "displayMode": "gradient"}
    if panel.type == "table":
        return {"showHeader": True, "cellHeight": "sm"}
    if panel.type == "barchart":
        return {"orientation": "auto", "stacking": "normal", "showValue": "auto", "xField": None}
    return {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max"]},
            "tooltip": {"mode": "multi", "sort": "desc"}}


def render_panel(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    targets = [
        {
            "refId": chr(ord("A") + i),
            "datasource": datasource_ref(),
            "editorMode": "code",
            "format": q.format,
            "rawQuery": True,
            "rawSql": q.sql,
        }
        for i, q in enumerate(panel.queries)
    ]
    out: dict[str, Any] = {
        "id": panel_id,
        "type": panel.type,
        "title": panel.title,
        "description": panel.description,
        "datasource": datasource_ref(),
        "gridPos": {"x": x, "y": y, "w": panel.width, "h": panel.height},
        "targets": targets,
        "fieldConfig": _field_config(panel),
        "options": _options(panel),
    }
    return out


def render_variable(var: Variable) -> dict[str, Any]:
    return {
        "name": var.name,
        "label": var.label,
        "type": "query",
        "datasource": datasource_ref(),
        "query": var.sql,
        "definition": var.sql,
        "refresh": 1,  # on dashboard load: a role's sites come from its row-level security
        "includeAll": False,
        "multi": False,
        "sort": 1,
        "current": {},
        "hide": 0,
        "options": [],
    }


def render(dashboard: Dashboard) -> dict[str, Any]:
    """The Grafana dashboard JSON model (``id`` null: Grafana keys it by ``uid``)."""
    if not 0 < len(dashboard.uid) <= UID_MAX:
        raise ValueError(f"uid must be 1..{UID_MAX} characters: {dashboard.uid!r}")
    panels = []
    x = y = row_h = 0
    for i, panel in enumerate(dashboard.panels, start=1):
        if x + panel.width > GRID_WIDTH:
            x, y, row_h = 0, y + row_h, 0
        panels.append(render_panel(panel, i, x, y))
        x += panel.width
        row_h = max(row_h, panel.height)
    return {
        "id": None,
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": ["smartward", *dashboard.tags],
        "timezone": "Asia/Ho_Chi_Minh",
        "editable": False,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 0,
        "refresh": dashboard.refresh,
        "time": {"from": dashboard.time_from, "to": "now"},
        "templating": {"list": [render_variable(v) for v in dashboard.variables]},
        "annotations": {"list": []},
        "panels": panels,
    }
