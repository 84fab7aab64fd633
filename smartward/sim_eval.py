"""Scenario evaluation of ``smartward sim evaluate`` (smartward/sim_cli.py): run a scenario
through the REAL pipeline on a fast clock, read back the incidents the ops center STORED and
score them against the scenario's ground truth (``simulators.scoring``); the table it prints.
"""


from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from contract.registry import Registry
from ops_center.adapters.ports import IncidentRepository
from simulators.scenarios import Scenario
from simulators.scoring import ExpectedIncident, KindTiming, Score, score, timing_by_kind

logger = logging.getLogger(__name__)

LOCAL = timezone(timedelta(hours=7), "ICT")  # Asia/Ho_Chi_Minh, no DST
# An evaluation aims at about this many real seconds when no speed is given (the governor
# slows the clock if the pipeline cannot keep up).
_TARGET_REAL_S = 90.0
_FAST_SPEED = 20_000.0


# --- evaluation --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredIncident:
    """An incident as the store has it, with what scoring needs (members from the alerts
    table; ``merged_into`` from the timeline)."""

    id: str
    site: str
    kind: str
    severity: str
    state: str
    opened_at: datetime
    resolved_at: datetime | None
    sensors: tuple[str, ...]
    gateways: tuple[str, ...]
    alert_ids: tuple[str, ...]
    merged_into: str | None


@dataclass(frozen=True, slots=True)
class Evaluation:
    scenario: Scenario
    seed: int
    speed: float
    score: Score
    incidents: tuple[StoredIncident, ...]
    alerts: int
    real_s: float
    clock_held_s: float
    readings_stored: int
    dead_letters: int
    backend: str
    timing: tuple[KindTiming, ...] = ()
    flush_s: float = 60.0

    @property
    def compression(self) -> float:
        return self.score.alerts_per_incident


def stored_incidents(incidents: IncidentRepository) -> tuple[list[StoredIncident], int]:
    """Every incident in the store, and how many alerts the store holds."""
    out: list[StoredIncident] = []
    offset = 0
    page_size = 500
    while True:
        page = incidents.list_incidents(None, None, page_size, offset)
        for rec in page.items:
            detail = incidents.get_incident(rec.id)
            alerts = detail.alerts if detail is not None else []
            merged = detail is not None and any(e.action == "merged" for e in detail.timeline)
            out.append(StoredIncident(
                id=rec.id, site=rec.site, kind=rec.kind, severity=rec.severity, state=rec.state,
                opened_at=rec.opened_at, resolved_at=rec.resolved_at,
                sensors=tuple(sorted({a.sensor for a in alerts if a.sensor})),
                gateways=tuple(sorted({a.gateway for a in alerts if a.gateway})),
                alert_ids=tuple(a.id for a in alerts),
                merged_into="merged" if merged else None,
            ))
        offset += len(page.items)
        if not page.items or offset >= page.total:
            break
    total_alerts = incidents.list_alerts(None, None, 1, 0).total
    return out, total_alerts


def plan_scenario(build: Callable[[datetime], Scenario], *, tail_s: float, margin_s: float = 600.0,
                  now: datetime | None = None) -> Scenario:
    """The scenario, started far enough in the past that its end (plus ``tail_s``) is behind
    the wall clock now, so the simulated clock never has to wait for the wall clock.

    A scenario's length may depend on its start (events at local hours), hence the loop."""
    wall = now or datetime.now(UTC)
    length = 0.0
    for _ in range(8):
        start = (wall - timedelta(seconds=length + tail_s + margin_s)).replace(second=0, microsecond=0)
        sc = build(start)
        if sc.duration_s <= length:
            return sc
        length = sc.duration_s
    start = (wall - timedelta(seconds=length + tail_s + margin_s + 86_400)).replace(second=0, microsecond=0)
    return build(start)


def parse_start(text: str) -> datetime:
    """``--start``: an ISO 8601 date-time, local time (Asia/Ho_Chi_Minh) unless it carries an
    offset."""
    start = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return start.replace(tzinfo=LOCAL) if start.tzinfo is None else start


class StartTooLateError(ValueError):
    """A pinned start whose scenario would end after the wall clock."""


def pinned_scenario(build: Callable[[datetime], Scenario], start: datetime, *, tail_s: float,
                    now: datetime | None = None) -> Scenario:
    """The scenario from ``start``; its end (plus ``tail_s``) must be behind the wall clock,
    as :func:`plan_scenario` ensures for a start it chooses."""
    sc = build(start)
    wall = now or datetime.now(UTC)
    ends = sc.end + timedelta(seconds=tail_s)
    if ends > wall:
        raise StartTooLateError(
            f"Kịch bản từ {start.isoformat()} kết thúc lúc {ends.astimezone(LOCAL):%Y-%m-%d %H:%M}, "
            f"sau giờ hiện tại / the scenario from {start.isoformat()} ends (with its tail) at "
            f"{ends.astimezone(LOCAL):%Y-%m-%d %H:%M} local, after now: start earlier"
        )
    return sc


def default_speed(duration_s: float) -> float:
    return max(60.0, duration_s / _TARGET_REAL_S)


def evaluate(
    build: Callable[[datetime], Scenario],
    *,
    registry: Registry,
    speed: float | None = None,
    seed: int = 1,
    broker: str = "mosquitto",
    db_url: str | None = None,
    fast: bool = False,
    flush_s: float = 60.0,
    timeout_s: float | None = None,
    workdir: Path | None = None,
    on_running: Callable[[object], None] | None = None,
    start: datetime | None = None,
    progress: Callable[[str], None] | None = None,
) -> Evaluation:
    """Run the scenario ``build(start)`` through the pipeline and score what was stored.

    ``start`` pins the scenario's start (default: :func:`plan_scenario` picks one in the past).
    ``on_running(stack)`` is called once the stack is up (tests use it to crash and restart the
    ops service mid-run). ``progress`` is told the simulated time every few seconds (the CLI
    prints it on stderr)."""
    from smartward.stack import Stack

    tail_s = 2 * flush_s + 60.0
    sc = (plan_scenario(build, tail_s=tail_s) if start is None
          else pinned_scenario(build, start, tail_s=tail_s))
    chosen = _FAST_SPEED if fast else (speed or default_speed(sc.duration_s))
    budget = timeout_s if timeout_s is not None else 4 * (sc.duration_s + tail_s) / min(chosen, 5000) + 180
    stop_at = sc.end + timedelta(seconds=tail_s)
    t0 = time.monotonic()
    shared_broker = broker not in ("mosquitto", "embedded")
    with Stack(registry, broker=broker, db_url=db_url, scenario=sc, speed=chosen, seed=seed, stop_at=stop_at,
               flush_s=flush_s, poll_s=min(10.0, flush_s), clear_broker=shared_broker, workdir=workdir,
               tick_interval_s=0.2) as stack:
        if on_running is not None:
            on_running(stack)
        with _reporting(progress, stack.clock.now, sc.start, stop_at):
            stack.wait_drained(timeout_s=max(1.0, budget - (time.monotonic() - t0)))
        real_s = time.monotonic() - t0
        counters = stack.counters()
        produced, alerts = stored_incidents(stack.repo.incidents)
        backend = stack.db_url.split(":", 1)[0]
        # The evaluation window ends here: the gateways' "offline" when the fleet stops is not
        # part of the scenario, so the ops center stops first.
        stack.stop_ops()
    result = score(sc.expected, produced, alerts=alerts)
    timing = timing_by_kind(result, sc.expected, lambda e: reporting_interval_s(registry, e, flush_s))
    return Evaluation(scenario=sc, seed=seed, speed=chosen, score=result, incidents=tuple(produced),
                      alerts=alerts, real_s=real_s, clock_held_s=counters.clock_held_s,
                      readings_stored=sum(counters.readings_stored.values()),
                      dead_letters=counters.dead_letters, backend=backend, timing=timing, flush_s=flush_s)


@contextlib.contextmanager
def _reporting(progress: Callable[[str], None] | None, now: Callable[[], datetime], start: datetime,
               end: datetime, every_s: float = 5.0) -> Iterator[None]:
    """Tells ``progress`` how far the simulated clock is, every ``every_s`` real seconds."""
    if progress is None:
        yield
        return
    stop = threading.Event()
    total_s = max(1.0, (end - start).total_seconds())

    def report() -> None:
        while not stop.wait(every_s):
            t = now()
            done = min(100.0, max(0.0, (t - start).total_seconds() / total_s * 100))
            progress(f"đồng hồ mô phỏng / simulated clock {t.astimezone(LOCAL):%d/%m %H:%M} ({done:.0f} %)")

    thread = threading.Thread(target=report, name="evaluate-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=every_s)


def reporting_interval_s(registry: Registry, expected: ExpectedIncident, flush_s: float) -> float:
    """The reporting interval an incident is judged in: the slowest ``interval_s`` among its
    sensors (registry); a gateway-level incident is seen through its batches (``flush_s``)."""
    intervals = [registry.sensors[s].spec.interval_s for s in expected.sensors if s in registry.sensors]
    return float(max(intervals)) if intervals else flush_s


# --- the table ---------------------------------------------------------------------------------------


def _minutes(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds / 60:+.1f} min"


def _local(t: datetime | None) -> str:
    return "—" if t is None else t.astimezone(LOCAL).strftime("%d/%m %H:%M")


def format_evaluation(ev: Evaluation) -> str:
    s = ev.score
    sc = ev.scenario
    hours = sc.duration_s / 3600
    lines = [
        f"Kịch bản / scenario: {sc.name}  (từ / --start {sc.start.astimezone(LOCAL):%Y-%m-%dT%H:%M}, "
        f"seed {ev.seed}, ×{ev.speed:g}, {ev.backend}; "
        f"{hours:.1f} h mô phỏng trong / simulated in {ev.real_s:.0f} s"
        + (f", đồng hồ chờ / clock held {ev.clock_held_s:.0f} s" if ev.clock_held_s >= 1 else "") + ")",
        f"  số đo đã lưu / readings stored       {ev.readings_stored}",
        f"  thư chết / dead letters               {ev.dead_letters}",
        f"  độ chính xác / precision              {s.precision:.2f}",
        f"  độ phủ / recall                       {s.recall:.2f}",
        f"  cảnh báo / alerts                     {s.alerts}",
        f"  sự cố / incidents                     {s.produced}  (dự kiến / expected {s.expected})",
        f"  nén / alerts per incident             {s.alerts_per_incident:.1f}",
        f"  phát hiện / time to detect            trung bình / mean {_minutes(s.mean_time_to_detect_s)}, "
        f"tối đa / max {_minutes(s.max_time_to_detect_s)}",
    ]
    by_id = {i.id: i for i in ev.incidents}
    if sc.expected:
        lines.append("")
        lines.append(f"  {'loại / kind':<18} {'địa bàn / site':<14} {'bắt đầu / onset':<16} "
                     f"{'phát hiện / opened':<19} {'Δ':>11} {'cảnh báo / alerts':>17}")
        detected = {d.expected: d for d in s.detections}
        for k, e in enumerate(sc.expected):
            d = detected.get(k)
            inc = by_id.get(d.incident) if d is not None else None
            lines.append(
                f"  {e.kind:<18} {e.site:<14} {_local(e.onset):<16} "
                f"{_local(inc.opened_at if inc else None) if d else 'BỎ SÓT / MISSED':<19} "
                f"{_minutes(d.detect_s) if d else '—':>11} {len(inc.alert_ids) if inc else 0:>17}")
    if ev.timing:
        lines.append("")
        lines.append(f"  {'thời gian phát hiện / time to detect':<36} {'giây / s':>9} {'chu kỳ / int.':>14} "
                     f"{'chu kỳ đo / interval':>21}  {'≤ 2 chu kỳ / within 2':<21}")
        for kt in ev.timing:
            secs = "—" if kt.detect_s is None else f"{kt.detect_s:+.0f}"
            ivs = "—" if kt.intervals is None else f"{kt.intervals:+.2f}"
            verdict = "đạt / pass" if kt.passed else "KHÔNG ĐẠT / FAIL"
            lines.append(f"  {kt.kind + (f' (×{kt.count})' if kt.count > 1 else ''):<36} {secs:>9} {ivs:>14} "
                         f"{kt.interval_s:>19.0f} s  {verdict:<21}")
    extra = [(iid, "dương tính giả / false positive") for iid in s.false_positives]
    extra += [(iid, "trùng lặp / duplicate") for iid in s.duplicates]
    if extra:
        lines.append("")
        for iid, why in extra:
            inc = by_id.get(iid)
            if inc is not None:
                lines.append(f"  {why}: {inc.kind} {inc.site} {_local(inc.opened_at)} "
                             f"({len(inc.alert_ids)} cảnh báo / alerts) [{iid}]")
    lines.append("  (giờ Việt Nam / local time, UTC+7)")
    return "\n".join(lines)
