"""VN_AQI per Decision 1459/QĐ-TCMT (12/11/2019): hourly (AQIʰ) and daily (AQIᵈ) indices.

Everything is in µg/m³, CO included (Bảng 2). Pure functions of concentrations: the caller
computes the hourly means (the domain has no I/O and no clock).

Choices the decision leaves open, stated once here:
- Rounding: "làm tròn thành số nguyên" without a rule; half-up reproduces the worked
  examples of §2.3 (43, 41, 45, 36, 65, 110) except NO₂ = 59.35, which the text prints as 60.
  The composite is the max of the rounded sub-indices (rounding is monotonic, so this is
  also the rounded max).
- NowCast: the text gives the weighted mean Σwⁱ⁻¹cᵢ/Σwⁱ⁻¹ for w > ½ and writes the w = ½
  case as Σ(½)ⁱcᵢ, which is the same mean up to a factor 1 − 2⁻¹² when all twelve hours
  exist. We use the weighted mean for both cases, since a missing cᵢ gets weight 0 (text,
  "Chú ý") and only the normalised form stays a mean then.
- Above the top breakpoint (≥ 1 200 µg/m³ for O₃ 1h, ≥ 500 for PM2.5...) the index is 500.
- O₃ 8h has no breakpoints above 400 µg/m³ (Bảng 2); past that, only the 1h column counts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

# Bảng 2 of QĐ 1459. Iᵢ and the BPᵢ column per pollutant (µg/m³).
INDEX_LEVELS: Final = (0, 50, 100, 150, 200, 300, 400, 500)
BREAKPOINTS: Final[Mapping[str, tuple[float, ...]]] = MappingProxyType({
    "o3_1h": (0, 160, 200, 300, 400, 800, 1000, 1200),
    "o3_8h": (0, 100, 120, 170, 210, 400),
    "co": (0, 10_000, 30_000, 45_000, 60_000, 90_000, 120_000, 150_000),
    "so2": (0, 125, 350, 550, 800, 1600, 2100, 2630),
    "no2": (0, 100, 200, 700, 1200, 2350, 3100, 3850),
    "pm10": (0, 50, 150, 250, 350, 420, 500, 600),
    "pm25": (0, 25, 50, 80, 150, 250, 350, 500),
})
PM: Final = ("pm25", "pm10")
GASES: Final = ("o3", "no2", "so2", "co")
# Above this maximum 8-hour mean the O₃ 8h column is not used (QĐ 1459 §2.2.2 b).
O3_8H_CUTOFF: Final = 400.0


def round_half_up(x: float) -> int:
    """Round to the nearest integer, halves up. The 9-decimal pre-rounding absorbs binary
    noise such as 109.49999999999999 for an exact 109.5 (the PM2.5 example of §2.3 c)."""
    return math.floor(round(x, 9) + 0.5)


def sub_index(column: str, concentration: float) -> float:
    """Công thức 1/2: linear interpolation in Bảng 2. ``column`` is a key of BREAKPOINTS.

    Unrounded; negative concentrations are treated as 0.
    """
    bps = BREAKPOINTS[column]
    c = max(0.0, float(concentration))
    if c >= bps[-1]:
        if len(bps) < len(INDEX_LEVELS):  # O₃ 8h: the table stops at 400 µg/m³ (I = 300)
            if c == bps[-1]:
                return float(INDEX_LEVELS[len(bps) - 1])
            raise ValueError(f"{column} = {c} is above the last breakpoint; use the O3 1h column")
        return float(INDEX_LEVELS[-1])
    for i in range(len(bps) - 1):
        lo, hi = bps[i], bps[i + 1]
        if c < hi:
            i_lo, i_hi = INDEX_LEVELS[i], INDEX_LEVELS[i + 1]
            return (i_hi - i_lo) / (hi - lo) * (c - lo) + i_lo
    raise AssertionError("unreachable")  # pragma: no cover


def nowcast(hourly: Sequence[float | None]) -> float | None:
    """NowCast of PM (QĐ 1459 §2.2.1 a). ``hourly[0]`` is c1, the current hour's mean;
    ``hourly[11]`` is c12. Missing hours are None (weight 0). Returns None when fewer than
    2 of c1, c2, c3 exist ("không có dữ liệu")."""
    c = list(hourly[:12])
    if sum(1 for v in c[:3] if v is not None) < 2:
        return None
    present = [v for v in c if v is not None]
    c_max, c_min = max(present), min(present)
    if c_max <= 0:
        return 0.0
    w = max(c_min / c_max, 0.5)
    num = den = 0.0
    for i, v in enumerate(c):
        if v is None:
            continue
        weight = w**i
        num += weight * v
        den += weight
    return num / den


def nowcast_weight(hourly: Sequence[float | None]) -> float | None:
    """The weight w used by :func:`nowcast` (for display and tests)."""
    present = [v for v in hourly[:12] if v is not None]
    if not present or max(present) <= 0:
        return None
    return max(min(present) / max(present), 0.5)


# --- Categories (Bảng 1, Bảng 4) -----------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Category:
    low: int
    high: int
    label_vi: str
    label_en: str
    colour_vi: str
    colour_hex: str
    rgb: tuple[int, int, int]
    health_vi: str
    health_en: str


CATEGORIES: Final = (
    Category(0, 50, "Tốt", "Good", "Xanh", "#00E400", (0, 228, 0),
             "Chất lượng không khí tốt, không ảnh hưởng tới sức khỏe.",
             "Air quality is good; no health impact."),
    Category(51, 100, "Trung bình", "Moderate", "Vàng", "#FFFF00", (255, 255, 0),
             "Chất lượng không khí ở mức chấp nhận được. Tuy nhiên, đối với những người nhạy cảm "
             "(người già, trẻ em, người mắc các bệnh hô hấp, tim mạch…) có thể chịu những tác động "
             "nhất định tới sức khỏe.",
             "Air quality is acceptable; sensitive people (elderly, children, people with "
             "respiratory or heart disease) may be somewhat affected."),
    Category(101, 150, "Kém", "Poor", "Da cam", "#FF7E00", (255, 126, 0),
             "Những người nhạy cảm gặp phải các vấn đề về sức khỏe, những người bình thường ít ảnh hưởng.",
             "Sensitive groups have health problems; the general public is less affected."),
    Category(151, 200, "Xấu", "Bad", "Đỏ", "#FF0000", (255, 0, 0),
             "Những người bình thường bắt đầu có các ảnh hưởng tới sức khỏe, nhóm người nhạy cảm có "
             "thể gặp những vấn đề sức khỏe nghiêm trọng hơn.",
             "Everyone begins to be affected; sensitive groups may have more serious effects."),
    Category(201, 300, "Rất xấu", "Very bad", "Tím", "#8F3F97", (143, 63, 151),
             "Cảnh báo hưởng tới sức khỏe: mọi người bị ảnh hưởng tới sức khỏe nghiêm trọng hơn.",
             "Health alert: everyone may have more serious health effects."),
    Category(301, 500, "Nguy hại", "Hazardous", "Nâu", "#7E0023", (126, 0, 35),
             "Cảnh báo khẩn cấp về sức khỏe: Toàn bộ dân số bị ảnh hưởng tới sức khỏe tới mức "
             "nghiêm trọng.",
             "Health emergency: the whole population is seriously affected."),
)


def category(aqi: int) -> Category:
    """The Bảng 1 band of an integer AQI (values above 500 fall in Nguy hại)."""
    for cat in CATEGORIES:
        if aqi <= cat.high:
            return cat
    return CATEGORIES[-1]


# --- Composite indices -----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Component:
    pollutant: str       # pm25, pm10, o3, no2, so2, co
    column: str          # the Bảng 2 column used: pm25, o3_1h, o3_8h...
    concentration: float  # what was put in the formula (NowCast, 1h mean, 24h mean...)
    index: int


@dataclass(frozen=True, slots=True)
class AqiResult:
    value: int
    dominant: str                      # pollutant with the highest sub-index (Bảng 3)
    components: tuple[Component, ...]  # every pollutant that had data
    method: str = "VN_AQI"

    @property
    def category(self) -> Category:
        return category(self.value)


def _compose(components: list[Component]) -> AqiResult | None:
    if not any(c.pollutant in PM for c in components):
        return None  # QĐ 1459 §2.1 b: PM2.5 or PM10 is mandatory
    best = max(components, key=lambda c: (c.index, c.pollutant in PM))
    return AqiResult(value=best.index, dominant=best.pollutant, components=tuple(components))


def _finite(v: float | None) -> bool:
    return v is not None and math.isfinite(v)


def hourly_aqi(
    pm_hourly: Mapping[str, Sequence[float | None]],
    gases_1h: Mapping[str, float | None],
) -> AqiResult | None:
    """AQIʰ (§2.2.1). ``pm_hourly``: for pm25/pm10, the last 12 hourly means, current hour
    first (NowCast). ``gases_1h``: the current 1-hour mean of o3 (O₃ 1h column), no2, so2, co.
    None when neither PM has a NowCast."""
    comps: list[Component] = []
    for p in PM:
        series = pm_hourly.get(p)
        if series is None:
            continue
        nc = nowcast(series)
        if nc is not None:
            comps.append(Component(p, p, nc, round_half_up(sub_index(p, nc))))
    for g in GASES:
        c = gases_1h.get(g)
        if c is None or not _finite(c):
            continue
        column = "o3_1h" if g == "o3" else g
        comps.append(Component(g, column, c, round_half_up(sub_index(column, c))))
    return _compose(comps)


def daily_aqi(
    pm_24h: Mapping[str, float | None],
    max_1h: Mapping[str, float | None],
    o3_max_8h: float | None = None,
) -> AqiResult | None:
    """AQIᵈ (§2.2.2). ``pm_24h``: 24-hour means of pm25/pm10. ``max_1h``: the day's maximum
    1-hour mean of o3, no2, so2, co. O₃ takes the larger of its 1h-column index of the max 1h
    mean and its 8h-column index of the max 8h mean, the latter dropped above 400 µg/m³."""
    comps: list[Component] = []
    for p in PM:
        c = pm_24h.get(p)
        if c is not None and _finite(c):
            comps.append(Component(p, p, c, round_half_up(sub_index(p, c))))
    for g in ("no2", "so2", "co"):
        c = max_1h.get(g)
        if c is not None and _finite(c):
            comps.append(Component(g, g, c, round_half_up(sub_index(g, c))))
    o3_options: list[Component] = []
    o3_1h = max_1h.get("o3")
    if o3_1h is not None and _finite(o3_1h):
        o3_options.append(Component("o3", "o3_1h", o3_1h, round_half_up(sub_index("o3_1h", o3_1h))))
    if o3_max_8h is not None and _finite(o3_max_8h) and o3_max_8h <= O3_8H_CUTOFF:
        o3_options.append(Component("o3", "o3_8h", o3_max_8h,
                                    round_half_up(sub_index("o3_8h", o3_max_8h))))
    if o3_options:
        comps.append(max(o3_options, key=lambda c: c.index))
    return _compose(comps)


def _mean(values: Sequence[float | None], min_count: int) -> float | None:
    present = [v for v in values if v is not None]
    if len(present) < min_count:
        return None
    return sum(present) / len(present)


def daily_inputs(
    hourly: Mapping[str, Sequence[float | None]],
    *,
    min_hours_24h: int = 18,
    min_hours_8h: int = 6,
) -> tuple[dict[str, float | None], dict[str, float | None], float | None]:
    """From the day's 24 hourly means per pollutant (01:00 … 00:00, §2.2.2 a) to the inputs
    of :func:`daily_aqi`: (24h means of PM, max 1h of gases, max 8h rolling mean of O₃).

    The decision does not give a completeness rule; the minimum counts (75 % of the hours)
    are configurable defaults. The 8-hour means are those of 8 consecutive hours of the
    given series; to reproduce the decision's example (24 eight-hour means per day), pass
    the previous day's last 7 hours in front of the O₃ series.
    """
    pm_24h = {p: _mean(hourly.get(p, ()), min_hours_24h) for p in PM if p in hourly}
    max_1h: dict[str, float | None] = {}
    for g in GASES:
        if g in hourly:
            present = [v for v in hourly[g] if v is not None]
            max_1h[g] = max(present) if present else None
    o3_8h: float | None = None
    o3 = list(hourly.get("o3", ()))
    means = [_mean(o3[i:i + 8], min_hours_8h) for i in range(max(0, len(o3) - 7))]
    present_8h = [m for m in means if m is not None]
    if present_8h:
        o3_8h = max(present_8h)
    return pm_24h, max_1h, o3_8h
