"""Score produced incidents against a scenario's ground truth.

An expected incident is any object with ``site, kind, onset, end, sensors, gateways, note``
(the scenario engineer's frozen dataclass satisfies :class:`ExpectedIncident`). A produced
incident matches an expected one when site and kind agree, its open period overlaps
[``onset − tolerance``, ``end + tolerance``] (open-ended when ``end`` is None) while it
opened no more than ``max_early_s`` before the onset (rules on precursors, such as rain
and rising water before the street reaches 20 cm, legitimately warn early: the time to
detect is then negative), and, when both name sensors or gateways, they share at least one.
Matching is one-to-one, earliest incident first; further incidents for an already-matched
expectation are ``duplicates`` (fragmentation) and count against precision. Incidents merged
into another (a gateway outage absorbed by an area outage) are not counted as produced.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


class ExpectedIncident(Protocol):
    @property
    def site(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def onset(self) -> datetime: ...
    @property
    def end(self) -> datetime | None: ...
    @property
    def sensors(self) -> frozenset[str]: ...
    @property
    def gateways(self) -> frozenset[str]: ...
    @property
    def note(self) -> str: ...


class ProducedIncident(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def site(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def opened_at(self) -> datetime: ...
    @property
    def resolved_at(self) -> datetime | None: ...
    @property
    def sensors(self) -> tuple[str, ...]: ...
    @property
    def gateways(self) -> tuple[str, ...]: ...
    @property
    def alert_ids(self) -> tuple[str, ...]: ...
    @property
    def merged_into(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Detection:
    expected: int        # index into the expected list
    incident: str        # produced incident id
    detect_s: float      # opened_at − onset (negative: opened before the stated onset)


@dataclass(frozen=True, slots=True)
class Score:
    expected: int
    produced: int
    true_positives: int
    precision: float
    recall: float
    alerts: int
    alerts_per_incident: float      # compression: alerts / produced incidents
    detections: tuple[Detection, ...]
    missed: tuple[int, ...]         # indices of expected incidents never detected
    false_positives: tuple[str, ...]
    duplicates: tuple[str, ...]     # extra incidents for an already detected expectation

    @property
    def time_to_detect_s(self) -> tuple[float, ...]:
        return tuple(d.detect_s for d in self.detections)

    @property
    def mean_time_to_detect_s(self) -> float | None:
        t = self.time_to_detect_s
        return statistics.fmean(t) if t else None

    @property
    def max_time_to_detect_s(self) -> float | None:
        t = self.time_to_detect_s
        return max(t) if t else None


def _overlaps(expected: frozenset[str], produced: Iterable[str]) -> bool:
    got = set(produced)
    return not expected or not got or bool(expected & got)


def _matches(e: ExpectedIncident, inc: ProducedIncident, tolerance_s: float, max_early_s: float) -> bool:
    if e.site != inc.site or e.kind != inc.kind:
        return False
    opened = inc.opened_at.timestamp()
    onset = e.onset.timestamp()
    if opened < onset - max(tolerance_s, max_early_s):
        return False
    if e.end is not None and opened > e.end.timestamp() + tolerance_s:
        return False
    if inc.resolved_at is not None and inc.resolved_at.timestamp() < onset - tolerance_s:
        return False
    return _overlaps(e.sensors, inc.sensors) and _overlaps(e.gateways, inc.gateways)


def score(expected: Sequence[ExpectedIncident], produced: Sequence[ProducedIncident], *,
          alerts: int | None = None, tolerance_s: float = 600.0, max_early_s: float = 3600.0) -> Score:
    """Precision, recall, alert compression and time to detect. ``alerts``: how many alerts
    were raised in the run (default: the alerts the produced incidents hold)."""
    top = sorted((i for i in produced if getattr(i, "merged_into", None) is None),
                 key=lambda i: i.opened_at)
    if alerts is None:
        alerts = len({a for i in produced for a in i.alert_ids})
    detections: list[Detection] = []
    detected: set[int] = set()
    false_pos: list[str] = []
    dups: list[str] = []
    for inc in top:
        candidates = [k for k, e in enumerate(expected) if _matches(e, inc, tolerance_s, max_early_s)]
        fresh = [k for k in candidates if k not in detected]
        if fresh:
            k = min(fresh, key=lambda k: abs(inc.opened_at.timestamp() - expected[k].onset.timestamp()))
            detected.add(k)
            detections.append(Detection(k, inc.id, inc.opened_at.timestamp() - expected[k].onset.timestamp()))
        elif candidates:
            dups.append(inc.id)
        else:
            false_pos.append(inc.id)
    tp = len(detections)
    return Score(
        expected=len(expected), produced=len(top), true_positives=tp,
        precision=tp / len(top) if top else 1.0,
        recall=tp / len(expected) if expected else 1.0,
        alerts=alerts, alerts_per_incident=alerts / len(top) if top else 0.0,
        detections=tuple(detections),
        missed=tuple(k for k in range(len(expected)) if k not in detected),
        false_positives=tuple(false_pos), duplicates=tuple(dups),
    )


@dataclass(frozen=True, slots=True)
class KindTiming:
    """Time to detect of one incident kind, judged against its sensors' reporting interval."""

    kind: str
    count: int                  # expected incidents of this kind
    interval_s: float           # the slowest reporting interval among them
    detect_s: float | None      # the latest detection (None: one was missed)
    max_intervals: float

    @property
    def intervals(self) -> float | None:
        return None if self.detect_s is None else self.detect_s / self.interval_s

    @property
    def passed(self) -> bool:
        return self.detect_s is not None and self.detect_s <= self.max_intervals * self.interval_s


def timing_by_kind(result: Score, expected: Sequence[ExpectedIncident],
                   interval_of: Callable[[ExpectedIncident], float], *,
                   max_intervals: float = 2.0) -> tuple[KindTiming, ...]:
    """Per kind (in ground-truth order): the latest time to detect, in seconds and in
    reporting intervals (``interval_of(expected)``: the slowest interval of its sensors,
    or the gateways' flush interval for gateway-level incidents), pass/fail against
    ``max_intervals``. A missed incident fails its kind."""
    by_expected = {d.expected: d.detect_s for d in result.detections}
    kinds: dict[str, list[int]] = {}
    for k, e in enumerate(expected):
        kinds.setdefault(e.kind, []).append(k)
    out: list[KindTiming] = []
    for kind, idx in kinds.items():
        times = [by_expected.get(k) for k in idx]
        detect = None if any(t is None for t in times) else max(t for t in times if t is not None)
        out.append(KindTiming(kind, len(idx), max(interval_of(expected[k]) for k in idx), detect,
                              max_intervals))
    return tuple(out)
