"""What every rule kind shares: the selector, levels, the evaluator protocol, the engine
settings and the local-time helpers (the level map and the hysteresis machine are in
``ops_center.domain.rules.levels``).

Rule definitions are frozen pydantic models (they are human-edited data, validated with
line numbers by ``ops_center.rulebook.loader``); evaluators are small mutable objects holding the
state of one rule on one (sensor, metric) series, fed a batch of readings at a time.

Levels are severity ranks: 0 = clear, 1 info, 2 warning, 3 critical, 4 emergency.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from contract.registry import SensorRef
from ops_center.domain.alerts import Severity, severity_rank


class Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _as_tuple(value: object) -> object:
    if isinstance(value, str | int | float | bool):
        return (value,)
    return value


StrTuple = Annotated[tuple[str, ...], BeforeValidator(_as_tuple)]
Scalar = str | int | float | bool
ScalarTuple = Annotated[tuple[Scalar, ...], BeforeValidator(_as_tuple)]


class Selector(Strict):
    """Which sensors a rule or an override applies to. Empty fields match everything; a
    list matches any of its values; ``attrs`` matches sensor attributes (all must match)."""

    kind: StrTuple = ()
    site: StrTuple = ()
    gateway: StrTuple = ()
    sensor: StrTuple = ()
    attrs: dict[str, ScalarTuple] = Field(default_factory=dict)

    def matches(self, ref: SensorRef) -> bool:
        if self.kind and ref.spec.kind not in self.kind:
            return False
        if self.site and ref.site not in self.site:
            return False
        if self.gateway and ref.gateway not in self.gateway:
            return False
        if self.sensor and ref.spec.id not in self.sensor:
            return False
        for name, allowed in self.attrs.items():
            if name not in ref.spec.attrs or ref.spec.attrs[name] not in allowed:
                return False
        return True

    def matches_target(self, site: str, gateway: str | None) -> bool:
        """For gateway-level rules: only site and gateway are considered."""
        if self.site and site not in self.site:
            return False
        return not (self.gateway and gateway not in self.gateway)


class Names(Strict):
    vi: str = Field(min_length=1)
    en: str = Field(min_length=1)


class Level(Strict):
    at: float
    severity: Severity
    # The alert's words at this level, when they differ from the rule's title (rain: "Mưa to"
    # then "Mưa rất to", docs/domain-facts.md §3.1).
    title: Names | None = None


def level_title(rule: RuleBase, rank: int) -> Names | None:
    """The title of the highest level of ``rule`` with severity rank ``rank`` that has one."""
    found: Names | None = None
    for lv in getattr(rule, "levels", ()):
        if isinstance(lv, Level) and lv.title is not None and severity_rank(lv.severity) == rank:
            found = lv.title
    return found


class RuleBase(Strict):
    """Fields common to every rule kind."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,62}$")
    category: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    select: Selector = Field(default_factory=Selector)
    # Metrics the rule applies to; empty = every metric of the selected sensors.
    metrics: StrTuple = ()
    enabled: bool = True
    title: Names


class EngineSettings(Strict):
    """Engine-wide knobs (the ``settings:`` block of the rules file)."""

    # A reading is late when its batch's sent_at − its ts exceeds this (judged from the
    # message, never from the wall clock).
    lateness_s: float = Field(default=600.0, ge=0)
    # A raise this soon (reading time) after the same alert cleared reopens it (flap).
    reraise_hold_s: float = Field(default=600.0, ge=0)
    # Asia/Ho_Chi_Minh is UTC+7 with no daylight saving time; a fixed offset keeps the domain
    # free of tz-database lookups.
    utc_offset_h: float = 7.0
    # How often (gateway time) the engine checks the silence of a gateway's sensors.
    freshness_check_s: float = Field(default=30.0, gt=0)
    # Readings with these qualities are not evaluated by value rules (they still count as
    # "the sensor talks" for freshness).
    skip_qualities: StrTuple = ("bad", "calibrating", "maintenance")


# --- Evaluators ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Signal:
    """A level change of one rule on one series, at reading ``index`` of the batch."""

    index: int
    level: int
    value: float
    limit: float | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """What an evaluator is built for: one sensor's metric, with the engine settings."""

    ref: SensorRef
    metric: str
    settings: EngineSettings
    # Where the sensor is (its own location, else its gateway's, else its site's), for rules
    # that follow the sun; None when the registry gives no position.
    lat: float | None = None
    lon: float | None = None
    # Scratch space shared by the evaluators of one sensor's metrics (a rule judged across
    # two metrics, such as the flow balance, keeps one state there); None: not shared.
    shared: dict[Any, Any] | None = None

    def attr(self, name: str) -> Scalar | None:
        return self.ref.spec.attrs.get(name)


class Evaluator(Protocol):
    @property
    def rule(self) -> RuleBase: ...

    def feed(self, ts: list[float], vals: list[float], sent_s: float) -> list[Signal]:
        """Feed readings of one series, sorted by time and newer than any fed before."""

    def state(self) -> Any:
        """JSON-serialisable state (for snapshots)."""

    def load(self, state: Any) -> None:
        """Restore :meth:`state`'s output."""


def ranks(levels: Sequence[Level], scale: float = 1.0) -> list[tuple[float, int]]:
    return [(lv.at * scale, severity_rank(lv.severity)) for lv in levels]


class LeveledRule(RuleBase):
    """Shared by rules with severity levels, hysteresis and durations."""

    hysteresis: float = Field(default=0.0, ge=0)
    raise_after_s: float = Field(default=0.0, ge=0)
    # Raise on the Nth consecutive reading at the level (and not before raise_after_s).
    raise_after_readings: int = Field(default=1, ge=1)
    clear_after_s: float = Field(default=0.0, ge=0)
    # Thresholds are reached at v ≥ at (v ≤ at below); ``strict`` makes it v > at (v < at).
    strict: bool = False

    @model_validator(mode="after")
    def _check_levels(self) -> LeveledRule:
        for name in ("levels", "above", "below"):
            levels = getattr(self, name, None)
            if levels is None:
                continue
            _check_ladder(levels, descending=(name == "below" or getattr(self, "direction", "") == "below"))
        return self


def _check_ladder(levels: Sequence[Level], *, descending: bool) -> None:
    pairs = [(lv.at, severity_rank(lv.severity)) for lv in levels]
    ordered = sorted(pairs, key=lambda p: -p[0] if descending else p[0])
    if pairs != ordered:
        raise ValueError("levels must be ordered from the mildest threshold to the most severe")
    sev = [r for _, r in pairs]
    if sev != sorted(sev):
        raise ValueError("level severities must not decrease as thresholds get more severe")


class LocalTime:
    """Local-time helpers for a fixed UTC offset (Asia/Ho_Chi_Minh: +7, no DST)."""

    __slots__ = ("offset_s",)

    def __init__(self, utc_offset_h: float) -> None:
        self.offset_s = utc_offset_h * 3600.0

    def minute_of_day(self, epoch_s: float) -> float:
        return ((epoch_s + self.offset_s) % 86_400.0) / 60.0

    def hour_bucket(self, epoch_s: float) -> int:
        return int((epoch_s + self.offset_s) // 3600.0)

    def bucket_start(self, bucket: int) -> float:
        return bucket * 3600.0 - self.offset_s


def parse_hhmm(text: str) -> float:
    hh, mm = text.split(":")
    h, m = int(hh), int(mm)
    if not (0 <= h <= 24 and 0 <= m < 60):
        raise ValueError(f"not a time of day: {text!r}")
    return h * 60.0 + m


class DarkWindow(Strict):
    """The hours a street lamp must be lit at the sensor's location: from sunset +
    ``after_sunset_s`` to sunrise − ``before_sunrise_s`` (``contract.solar``, NOAA). The
    margins cover the photocell's delay and scatter (docs/domain-facts.md §4.3: on ~15 min after
    sunset, off ~5 min before sunrise)."""

    after_sunset_s: float = Field(default=1200.0, ge=0, le=6 * 3600)
    before_sunrise_s: float = Field(default=1200.0, ge=0, le=6 * 3600)


class Hours(Strict):
    """A local time-of-day window; ``from`` after ``to`` wraps past midnight."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    start: str = Field(alias="from", pattern=r"^\d{2}:\d{2}$")
    end: str = Field(alias="to", pattern=r"^\d{2}:\d{2}$")

    def minutes(self) -> tuple[float, float]:
        return parse_hhmm(self.start), parse_hhmm(self.end)


def in_window(minute: float, window: tuple[float, float]) -> bool:
    lo, hi = window
    return lo <= minute < hi if lo <= hi else (minute >= lo or minute < hi)


def attr_float(target: Target, name: str | None, default: float = 1.0) -> float | None:
    """A numeric sensor attribute; None when missing or not a number."""
    if name is None:
        return default
    v = target.attr(name)
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v)


def fmt(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


Attrs = Mapping[str, Scalar]
