"""The SensorThings API 1.1 request grammar we serve: resource paths and the query options
``$top``, ``$skip``, ``$count``, ``$orderby``, ``$filter`` and ``$expand`` (OGC 18-088, §9.3).
Pure: strings in, values out; anything outside the supported subset is a ``StaQueryError``
(400 with a message in Vietnamese and English), never an exception of another kind.

Supported subset:

- path: ``Collection``, ``Collection(id)``, ``Collection(id)/Navigation``; ids are strings,
  quoted (``Things('tn-gw-01')``, a quote doubled inside);
- ``$filter``: comparisons ``eq ne gt ge lt le`` joined by ``and``, between a property
  (``phenomenonTime``, ``resultTime``, ``result``) and a literal (a number, or an ISO 8601 time
  with an offset, bare or quoted), on Observations only;
- ``$orderby``: ``property [asc|desc]``, comma-separated (``phenomenonTime``, ``resultTime``,
  ``result``, ``id`` on Observations; ``id``, ``name`` elsewhere);
- ``$expand``: navigation properties of the entity, one level, each with optional options in
  parentheses separated by ``;`` (``Observations($top=5;$orderby=phenomenonTime desc)``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Literal

from contract.bounds import MAX_TIME, MIN_TIME, safe_text
from ops_center.adapters.observations import Condition, Op, Order

COLLECTIONS: Final = ("Things", "Locations", "Datastreams", "Sensors", "ObservedProperties", "Observations")

# Navigation properties per collection: name -> (target collection, to-many).
NAVIGATION: Final[Mapping[str, Mapping[str, tuple[str, bool]]]] = {
    "Things": {"Locations": ("Locations", True), "Datastreams": ("Datastreams", True)},
    "Locations": {"Things": ("Things", True)},
    "Datastreams": {"Thing": ("Things", False), "Sensor": ("Sensors", False),
                    "ObservedProperty": ("ObservedProperties", False),
                    "Observations": ("Observations", True)},
    "Sensors": {"Datastreams": ("Datastreams", True)},
    "ObservedProperties": {"Datastreams": ("Datastreams", True)},
    "Observations": {"Datastream": ("Datastreams", False)},
}

DEFAULT_TOP: Final = 100
MAX_TOP: Final = 1000
MAX_SKIP: Final = 10_000_000
_MAX_OPTION_CHARS = 2000
_MAX_TERMS = 16

_FLIP: Final[dict[str, Op]] = {"eq": "eq", "ne": "ne", "gt": "lt", "ge": "le", "lt": "gt", "le": "ge"}
_OP_NAMES: Final[dict[str, Op]] = {o: o for o in _FLIP.values()}
TimeProperty = Literal["phenomenonTime", "resultTime"]
_OBS_ORDER: Final = {"phenomenonTime": "time", "resultTime": "time", "result": "result", "id": "id"}
_ENTITY_ORDER: Final = {"id": "id", "@iot.id": "id", "name": "name"}


class StaQueryError(Exception):
    """A request outside the supported grammar. ``vi`` and ``en`` say what and why."""

    def __init__(self, vi: str, en: str) -> None:
        super().__init__(en)
        self.vi = safe_text(vi, 300)
        self.en = safe_text(en, 300)


@dataclass(frozen=True, slots=True)
class Options:
    top: int = DEFAULT_TOP
    skip: int = 0
    count: bool = False
    orderby: tuple[Order, ...] = ()
    filter: tuple[Condition, ...] = ()
    expand: tuple[Expand, ...] = ()


@dataclass(frozen=True, slots=True)
class Expand:
    name: str
    options: Options = field(default_factory=Options)
    raw: tuple[tuple[str, str], ...] = ()  # the nested options as given, for next links


@dataclass(frozen=True, slots=True)
class Path:
    collection: str
    id: str | None = None
    navigation: str | None = None

    @property
    def target(self) -> str:
        """The collection of what the path names."""
        if self.navigation is None:
            return self.collection
        return NAVIGATION[self.collection][self.navigation][0]

    @property
    def to_many(self) -> bool:
        if self.navigation is None:
            return self.id is None
        return NAVIGATION[self.collection][self.navigation][1]


_SEGMENT_RE = re.compile(r"^(?P<name>[A-Za-z]+)(?:\((?P<key>'(?:[^']|'')*'|[0-9]+)\))?$")


def parse_path(path: str) -> Path:
    parts = [p for p in path.split("/") if p]
    if not parts or len(parts) > 2:
        raise StaQueryError(f"Đường dẫn không được hỗ trợ: {path!r}.", f"Unsupported path: {path!r}.")
    m = _SEGMENT_RE.match(parts[0])
    if m is None or m["name"] not in COLLECTIONS:
        raise StaQueryError(f"Không có tập thực thể {parts[0]!r}; có: {', '.join(COLLECTIONS)}.",
                            f"No entity set {parts[0]!r}; known: {', '.join(COLLECTIONS)}.")
    collection, key = m["name"], m["key"]
    ident = None if key is None else (key[1:-1].replace("''", "'") if key.startswith("'") else key)
    if len(parts) == 1:
        return Path(collection, ident)
    if ident is None:
        raise StaQueryError("Thuộc tính điều hướng cần một thực thể: Collection(id)/Navigation.",
                            "A navigation property needs one entity: Collection(id)/Navigation.")
    nav = parts[1]
    if nav not in NAVIGATION[collection]:
        known = ", ".join(NAVIGATION[collection])
        raise StaQueryError(f"{collection} không có thuộc tính điều hướng {nav!r}; có: {known}.",
                            f"{collection} has no navigation property {nav!r}; known: {known}.")
    return Path(collection, ident, nav)


def parse_options(params: Mapping[str, list[str]], collection: str) -> Options:
    """Options of a request (every ``$`` parameter once; other parameters are not ours)."""
    single: dict[str, str] = {}
    for name, values in params.items():
        if not name.startswith("$"):
            continue
        if len(values) != 1:
            raise StaQueryError(f"Tham số {name} xuất hiện nhiều lần.",
                                f"Option {name} is given more than once.")
        single[name] = values[0]
    return _options(single, collection, nested=False)


_OPTION_NAMES: Final = ("$top", "$skip", "$count", "$orderby", "$filter", "$expand")


def _options(raw: Mapping[str, str], collection: str, *, nested: bool) -> Options:
    for name, value in raw.items():
        if name not in _OPTION_NAMES:
            raise StaQueryError(f"Tham số {name} không được hỗ trợ; có: {', '.join(_OPTION_NAMES)}.",
                                f"Option {name} is not supported; supported: {', '.join(_OPTION_NAMES)}.")
        if len(value) > _MAX_OPTION_CHARS:
            raise StaQueryError(f"Tham số {name} quá dài.", f"Option {name} is too long.")
    top = _int(raw, "$top", DEFAULT_TOP, MAX_TOP, clamp=True)
    skip = _int(raw, "$skip", 0, MAX_SKIP)
    count = _bool(raw.get("$count", "false"))
    orderby = _orderby(raw.get("$orderby"), collection)
    conditions = _filter(raw.get("$filter"), collection)
    expand: tuple[Expand, ...] = ()
    if "$expand" in raw:
        if nested:
            raise StaQueryError("$expand chỉ hỗ trợ một cấp.", "$expand is supported one level deep only.")
        expand = _expand(raw["$expand"], collection)
    return Options(top, skip, count, orderby, conditions, expand)


def _int(raw: Mapping[str, str], name: str, default: int, limit: int, *, clamp: bool = False) -> int:
    text = raw.get(name)
    if text is None:
        return default
    if not re.fullmatch(r"[0-9]{1,10}", text.strip()):
        raise StaQueryError(f"{name} phải là số nguyên không âm.", f"{name} must be a non-negative integer.")
    value = int(text)
    if value > limit:
        if clamp:
            return limit  # the server pages: fewer items and an @iot.nextLink (§9.3.3.3)
        raise StaQueryError(f"{name} tối đa {limit}.", f"{name} is at most {limit}.")
    return value


def _bool(text: str) -> bool:
    if text.strip() in ("true", "false"):
        return text.strip() == "true"
    raise StaQueryError("$count phải là true hoặc false.", "$count must be true or false.")


def _orderby(text: str | None, collection: str) -> tuple[Order, ...]:
    if text is None:
        return ()
    allowed = _OBS_ORDER if collection == "Observations" else _ENTITY_ORDER
    out: list[Order] = []
    for term in text.split(","):
        words = term.split()
        if not 1 <= len(words) <= 2 or words[0] not in allowed or (
                len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise StaQueryError(
                f"$orderby không hợp lệ: {term.strip()!r}; sắp xếp theo: {', '.join(allowed)} [asc|desc].",
                f"Invalid $orderby: {term.strip()!r}; order by: {', '.join(allowed)} [asc|desc].")
        out.append(Order(allowed[words[0]], len(words) == 2 and words[1].lower() == "desc"))
        if len(out) > _MAX_TERMS:
            raise StaQueryError("$orderby quá nhiều điều kiện.", "Too many $orderby terms.")
    return tuple(out)


_TOKEN_RE = re.compile(r"\s*('(?:[^']|'')*'|[^\s()']+|\(|\))")
_NUMBER_RE = re.compile(r"^-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$")
_TIME_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(?:Z|[+-][0-9]{2}:?[0-9]{2})$")
_PROPERTIES: Final[dict[str, Literal["time", "result"]]] = {
    "phenomenonTime": "time", "resultTime": "time", "result": "result"}


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            if text[pos:].strip() == "":
                break
            raise StaQueryError("$filter không đọc được.", "$filter cannot be read.")
        out.append(m.group(1))
        pos = m.end()
    return out


def _filter(text: str | None, collection: str) -> tuple[Condition, ...]:
    if text is None:
        return ()
    if collection != "Observations":
        raise StaQueryError("$filter chỉ được hỗ trợ trên Observations (phenomenonTime, result).",
                            "$filter is supported on Observations only (phenomenonTime, result).")
    tokens = _tokens(text)
    if "(" in tokens or ")" in tokens:
        raise StaQueryError("$filter: không hỗ trợ dấu ngoặc; chỉ các phép so sánh nối bằng 'and'.",
                            "$filter: parentheses are not supported; only comparisons joined by 'and'.")
    groups: list[list[str]] = [[]]
    for tok in tokens:
        if tok == "and":
            groups.append([])
        else:
            groups[-1].append(tok)
    if len(groups) > _MAX_TERMS:
        raise StaQueryError("$filter quá nhiều điều kiện.", "Too many $filter conditions.")
    return tuple(_comparison(g) for g in groups)


def _comparison(words: list[str]) -> Condition:
    shown = " ".join(words)
    if len(words) != 3 or words[1] not in _FLIP:
        if any(w in ("or", "not") or "(" in w for w in words):
            raise StaQueryError(f"$filter: chỉ hỗ trợ so sánh (eq ne gt ge lt le) nối bằng 'and': {shown!r}.",
                                f"$filter: only comparisons (eq ne gt ge lt le) joined by 'and': {shown!r}.")
        raise StaQueryError(f"$filter: cần 'thuộc tính phép-so-sánh giá-trị', nhận được {shown!r}.",
                            f"$filter: expected 'property operator value', got {shown!r}.")
    left, op, right = words[0], _OP_NAMES[words[1]], words[2]
    if left not in _PROPERTIES and right in _PROPERTIES:
        left, right, op = right, left, _FLIP[op]
    prop = _PROPERTIES.get(left)
    if prop is None:
        raise StaQueryError(f"$filter: thuộc tính {left!r} không được hỗ trợ; "
                            "có: phenomenonTime, resultTime, result.",
                            f"$filter: property {left!r} is not supported; supported: "
                            "phenomenonTime, resultTime, result.")
    if prop == "result":
        if not _NUMBER_RE.match(right):
            raise StaQueryError(f"$filter: result so sánh với một số, không phải {right!r}.",
                                f"$filter: result compares with a number, not {right!r}.")
        number = float(right)
        if not math.isfinite(number):
            raise StaQueryError("$filter: số quá lớn.", "$filter: number out of range.")
        return Condition("result", op, number)
    return Condition("time", op, _time(right))


def _time(text: str) -> datetime:
    literal = text[1:-1] if len(text) >= 2 and text[0] == text[-1] == "'" else text
    if _TIME_RE.match(literal):
        try:
            value = datetime.fromisoformat(literal.replace("Z", "+00:00"))
            utc = value.astimezone(UTC)
        except (ValueError, OverflowError):
            pass
        else:
            if MIN_TIME <= utc < MAX_TIME:
                return utc
    raise StaQueryError(f"$filter: {text!r} không phải thời điểm ISO 8601 có múi giờ "
                        "(vd 2026-11-28T05:00:00Z).",
                        f"$filter: {text!r} is not an ISO 8601 time with an offset "
                        "(e.g. 2026-11-28T05:00:00Z).")


def _split_top(text: str, sep: str) -> list[str]:
    """``text`` split on ``sep`` outside parentheses and quotes."""
    parts: list[str] = []
    cur: list[str] = []
    depth, quoted = 0, False
    for ch in text:
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
            if depth < 0:
                raise StaQueryError("$expand: dấu ngoặc không khớp.", "$expand: unbalanced parentheses.")
        if ch == sep and depth == 0 and not quoted:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth != 0 or quoted:
        raise StaQueryError("$expand: dấu ngoặc không khớp.", "$expand: unbalanced parentheses.")
    parts.append("".join(cur))
    return parts


_EXPAND_RE = re.compile(r"^\s*(?P<name>[A-Za-z]+)\s*(?:\((?P<opts>.*)\))?\s*$", re.S)


def _expand(text: str, collection: str) -> tuple[Expand, ...]:
    out: list[Expand] = []
    for item in _split_top(text, ","):
        m = _EXPAND_RE.match(item)
        if m is None:
            raise StaQueryError(f"$expand chỉ hỗ trợ một cấp: {item.strip()!r}.",
                                f"$expand is supported one level deep only: {item.strip()!r}.")
        name = m["name"]
        nav = NAVIGATION[collection].get(name)
        if nav is None:
            known = ", ".join(NAVIGATION[collection])
            raise StaQueryError(f"$expand: {collection} không có {name!r}; có: {known}.",
                                f"$expand: {collection} has no {name!r}; known: {known}.")
        nested: dict[str, str] = {}
        if m["opts"]:
            for opt in _split_top(m["opts"], ";"):
                key, eq, value = opt.partition("=")
                if not eq or key.strip() in nested:
                    raise StaQueryError(f"$expand: tùy chọn không hợp lệ {opt.strip()!r}.",
                                        f"$expand: invalid option {opt.strip()!r}.")
                nested[key.strip()] = value
        out.append(Expand(name, _options(nested, nav[0], nested=True), tuple(nested.items())))
        if len(out) > _MAX_TERMS:
            raise StaQueryError("$expand quá nhiều mục.", "Too many $expand items.")
    return tuple(out)
