"""Alerts: one active alert per (rule, sensor, metric), raised and cleared on READING time.

The book turns rule levels into :class:`AlertChange`\\ s. Levels are severity ranks
(0 = clear, 1 info … 4 emergency), so a rule with several thresholds escalates or
de-escalates one alert instead of opening several.

Flap suppression: a raise within ``reraise_hold_s`` (reading time) after the same key
cleared reopens the cleared alert (same id, same ``opened_at``, ``flaps`` + 1) instead of
creating a new one, and the change is marked ``reopened`` so it does not page again.

Late data: a change computed from a late reading (batch ``sent_at`` − reading ``ts`` >
lateness, judged from the message, not the wall clock) is stored with ``late=True`` and
``notify`` is False: it must not page as if it happened now.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any, Final, Literal

Severity = Literal["info", "warning", "critical", "emergency"]
SEVERITIES: Final[tuple[Severity, ...]] = ("info", "warning", "critical", "emergency")
_RANK: Final = {s: i + 1 for i, s in enumerate(SEVERITIES)}

AlertState = Literal["active", "cleared"]
AlertAction = Literal["raised", "reopened", "escalated", "deescalated", "cleared"]

# Namespace for deterministic ids: replaying the same readings gives the same alert ids,
# so a store can upsert instead of duplicating after a restart or a redelivery.
ID_NAMESPACE: Final = uuid.UUID("6f1c2a0e-5b7d-4c1e-9a57-2d1f0c8b9e31")


def severity_rank(severity: Severity) -> int:
    return _RANK[severity]


def severity_of(rank: int) -> Severity:
    return SEVERITIES[min(max(rank, 1), len(SEVERITIES)) - 1]


def to_datetime(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, tz=UTC)


def stable_id(*parts: object) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, "|".join(str(p) for p in parts)))


AlertKey = tuple[str, str, str]  # (rule, sensor or gateway, metric or "")


@dataclass(frozen=True, slots=True)
class AlertHeader:
    """What an alert's row (the adapters' ``AlertRecord``, table ``alerts``) and the engine's
    :class:`Alert` share, declared once here: both extend it. Times are reading (event) times,
    UTC; ``sensor``/``metric`` are None for gateway-level alerts."""

    id: str
    rule: str
    site: str
    severity: Severity
    state: AlertState
    opened_at: datetime
    updated_at: datetime
    sensor: str | None = None
    metric: str | None = None
    cleared_at: datetime | None = None
    value: float | None = None
    late: bool = False  # opened from late data

    def header_fields(self) -> dict[str, Any]:
        """The header's fields by name, of any alert shape: what another shape is built from
        (``AlertRecord(**alert.header_fields(), ...)``)."""
        return {name: getattr(self, name) for name in _ALERT_HEADER}


_ALERT_HEADER: Final = tuple(f.name for f in fields(AlertHeader))


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert(AlertHeader):
    """An alert as the engine keeps it: its header (the ``alerts`` row) plus what the rules and
    the screen need (``gateway_offline``/``gateway_silent`` have no sensor or metric)."""

    rule_kind: str      # threshold, rate, rolling_mean, laeq_hourly, regulatory_limit, nowcast_aqi,
                        # freshness, gateway_offline, gateway_silent, stuck, out_of_bounds,
                        # clock_skew, anomaly
    category: str       # flood, rain, drainage, air, noise, wastewater, emission, gas, fire,
                        # lighting, waste, power, connectivity, data_quality, anomaly
    gateway: str
    limit: float | None
    message_vi: str
    message_en: str
    flaps: int = 0      # times it re-raised within the hold after clearing

    @property
    def key(self) -> AlertKey:
        return (self.rule, self.sensor or self.gateway, self.metric or "")

    @property
    def active(self) -> bool:
        return self.state == "active"


@dataclass(frozen=True, slots=True)
class AlertChange:
    """What happened to one alert. ``at`` is the reading time of the change."""

    action: AlertAction
    alert: Alert
    at: datetime
    late: bool = False
    previous_severity: Severity | None = None

    @property
    def notify(self) -> bool:
        """True when this change may page someone now (never for late data or a flap)."""
        return not self.late and self.action in ("raised", "escalated")


@dataclass(frozen=True, slots=True)
class AlertContext:
    """Everything the book needs to write an alert besides its level and time."""

    rule: str
    rule_kind: str
    category: str
    site: str
    gateway: str
    sensor: str | None
    metric: str | None
    message_vi: str
    message_en: str

    @property
    def key(self) -> AlertKey:
        return (self.rule, self.sensor or self.gateway, self.metric or "")


class AlertBook:
    """Active alerts by key, and the recently cleared ones (for flap suppression)."""

    def __init__(self, *, reraise_hold_s: float = 600.0) -> None:
        self.reraise_hold_s = reraise_hold_s
        self.active: dict[AlertKey, Alert] = {}
        self._recent: dict[AlertKey, tuple[Alert, float]] = {}

    def get(self, key: AlertKey) -> Alert | None:
        return self.active.get(key)

    def set_level(
        self,
        ctx: AlertContext,
        level: int,
        at_s: float,
        *,
        value: float | None = None,
        limit: float | None = None,
        late: bool = False,
        message: tuple[str, str] | None = None,
    ) -> AlertChange | None:
        key = ctx.key
        current = self.active.get(key)
        at = to_datetime(at_s)
        vi, en = message if message is not None else (ctx.message_vi, ctx.message_en)
        if level <= 0:
            if current is None:
                return None
            cleared = replace(current, state="cleared", cleared_at=at, updated_at=at, value=value)
            del self.active[key]
            self._recent[key] = (cleared, at_s)
            return AlertChange("cleared", cleared, at, late)
        severity = severity_of(level)
        if current is not None:
            if current.severity == severity:
                return None
            action: AlertAction = "escalated" if level > severity_rank(current.severity) else "deescalated"
            updated = replace(current, severity=severity, updated_at=at, value=value, limit=limit,
                              message_vi=vi, message_en=en)
            self.active[key] = updated
            return AlertChange(action, updated, at, late, current.severity)
        recent = self._recent.pop(key, None)
        if recent is not None and at_s - recent[1] <= self.reraise_hold_s:
            prior = recent[0]
            reopened = replace(prior, state="active", cleared_at=None, updated_at=at, severity=severity,
                               value=value, limit=limit, flaps=prior.flaps + 1,
                               message_vi=vi, message_en=en)
            self.active[key] = reopened
            return AlertChange("reopened", reopened, at, late, prior.severity)
        alert = Alert(
            id=stable_id(ctx.rule, ctx.sensor or ctx.gateway, ctx.metric or "", round(at_s * 1000)),
            rule=ctx.rule, rule_kind=ctx.rule_kind, category=ctx.category, site=ctx.site,
            gateway=ctx.gateway, sensor=ctx.sensor, metric=ctx.metric, severity=severity,
            state="active", opened_at=at, cleared_at=None, updated_at=at, value=value, limit=limit,
            message_vi=vi, message_en=en, late=late,
        )
        self.active[key] = alert
        return AlertChange("raised", alert, at, late)

    def forget_before(self, epoch_s: float) -> None:
        """Drop cleared alerts older than the re-raise hold (keeps the book small)."""
        horizon = epoch_s - self.reraise_hold_s
        for key in [k for k, (_, t) in self._recent.items() if t < horizon]:
            del self._recent[key]

    # --- snapshot ------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "active": [alert_to_dict(a) for a in self.active.values()],
            "recent": [[alert_to_dict(a), t] for a, t in self._recent.values()],
        }

    def restore(self, data: dict[str, Any]) -> None:
        self.active = {}
        self._recent = {}
        for d in data.get("active", []):
            a = alert_from_dict(d)
            self.active[a.key] = a
        for d, t in data.get("recent", []):
            a = alert_from_dict(d)
            self._recent[a.key] = (a, float(t))


_TIME_FIELDS: Final = ("opened_at", "cleared_at", "updated_at")
_ALERT_FIELDS: Final = tuple(f.name for f in fields(Alert))


def alert_to_dict(a: Alert) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in _ALERT_FIELDS:
        v = getattr(a, name)
        out[name] = v.isoformat() if isinstance(v, datetime) else v
    return out


def alert_from_dict(d: dict[str, Any]) -> Alert:
    kw = dict(d)
    for name in _TIME_FIELDS:
        if kw.get(name) is not None:
            kw[name] = datetime.fromisoformat(kw[name])
    return Alert(**kw)
