"""``smartward sim ...``: simulated fleets and scenario evaluations.

    smartward sim list
    smartward sim run --scenario flood-evening --speed 60 [--seed 1] [--duration 600]
    smartward sim evaluate --scenario flood-evening [--speed 900] [--seed 1]
                           [--broker mosquitto|embedded|mqtt://host:port] [--db URL] [--fast]
                           [--start 2026-11-16T00:00]

``run`` drives one edge agent per gateway of the registry (simulated sensors, one shared
simulated clock) against the broker at ``SMARTWARD_MQTT_URL``, as a real fleet would.

``evaluate`` runs a scenario through the REAL pipeline (broker → edge agents → ingest and ops
service → store) on a fast clock until the scenario's simulated end, then scores the incidents
the ops center STORED against the scenario's ground truth (``simulators.scoring``):
precision, recall, alert compression, time to detect. The clock starts far enough in the past
that it never reaches the wall clock before the scenario ends (a simulated clock never runs
ahead of the wall clock: the ingest refuses readings from the future). ``--start`` pins the
start instead (local time): the simulated world depends on the date and the noise on how many
readings precede an event, so only a pinned start reproduces a run.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import FrameType

from contract.errors import RegistryError
from contract.registry import Registry, load_registry
from ops_center.adapters.repository import OpsRepository
from simulators.scenarios import SCENARIOS, Scenario, describe, get_scenario
from simulators.scoring import ExpectedIncident, KindTiming, Score, score, timing_by_kind

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

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


def stored_incidents(repo: OpsRepository) -> tuple[list[StoredIncident], int]:
    """Every incident in the store, and how many alerts the store holds."""
    out: list[StoredIncident] = []
    offset = 0
    page_size = 500
    while True:
        page = repo.list_incidents(None, None, page_size, offset)
        for rec in page.items:
            detail = repo.get_incident(rec.id)
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
    total_alerts = repo.list_alerts(None, None, 1, 0).total
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
        produced, alerts = stored_incidents(stack.repo)
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


# --- commands ------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="smartward sim", description="Mô phỏng / simulated fleets and scenarios")
    sub = p.add_subparsers(dest="command", required=True, metavar="<lệnh/command>")
    sub.add_parser("list", help="các kịch bản / the scenarios")
    run = sub.add_parser("run", help="chạy đội cổng mô phỏng / run a simulated fleet against the broker")
    run.add_argument("--scenario", help="kịch bản / scenario name (default: none, ordinary data)")
    run.add_argument("--speed", type=float, default=1.0, help="tốc độ đồng hồ / clock speed-up (default 1)")
    run.add_argument("--seed", type=int, default=0, help="hạt giống / random seed (default 0)")
    run.add_argument("--duration", type=float, help="dừng sau số giây thực này / stop after this many real s")
    run.add_argument("--start", help="đầu đồng hồ mô phỏng / clock start, RFC 3339 (default: in the past, "
                                     "so an hour of real time is replayed)")
    run.add_argument("--outbox", help="thư mục hộp thư đi / outbox directory (one sub-directory per gateway)")
    ev = sub.add_parser("evaluate", help="đánh giá kịch bản qua toàn hệ thống / score a scenario end to end")
    ev.add_argument("--scenario", required=True, help="kịch bản / scenario name")
    ev.add_argument("--speed", type=float, help="tốc độ tối đa / maximum clock speed-up "
                                                "(default: the scenario in about 90 s)")
    ev.add_argument("--seed", type=int, default=1, help="hạt giống / random seed (default 1)")
    ev.add_argument("--broker", default="mosquitto",
                    help="mosquitto (riêng, cổng trống / private, free port), embedded (amqtt, MQTT 3.1.1) "
                         "hoặc/or a "
                         "URL mqtt://host:port")
    ev.add_argument("--db", help="SMARTWARD_DB_URL của lần chạy / store of the run (default: a new SQLite "
                                 "file); use an EMPTY database")
    ev.add_argument("--fast", action="store_true",
                    help="nhanh nhất hệ thống chịu được / as fast as the pipeline can take")
    ev.add_argument("--timeout", type=float, help="giới hạn thời gian thực / real-time limit, s")
    ev.add_argument("--start", type=_start_arg,
                    help="đầu kịch bản, giờ Việt Nam / scenario start, ISO local time (Asia/Ho_Chi_Minh), "
                         "e.g. 2026-11-16T00:00, to reproduce a run (default: in the past, ending "
                         "before now); older than 30 days needs SMARTWARD_WINDOW_PAST_S")
    ev.add_argument("--check", action="store_true",
                    help="mã thoát 1 nếu recall < 1 hoặc precision < 0.9 / exit 1 below the targets")
    return p


def _start_arg(text: str) -> datetime:
    try:
        return parse_start(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"không phải ngày giờ ISO / not an ISO date-time: {text!r}") from exc


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    if args.command == "list":
        return _list()
    try:
        registry = load_registry(os.environ.get("SMARTWARD_REGISTRY") or None)
    except RegistryError as exc:
        print(f"Sổ đăng ký sai / invalid registry: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.scenario and args.scenario not in SCENARIOS:
        print(f"Không có kịch bản / unknown scenario {args.scenario!r}: {', '.join(SCENARIOS)}",
              file=sys.stderr)
        return EXIT_USAGE
    if args.command == "run":
        return _run(args, registry)
    return _evaluate(args, registry)


def _list() -> int:
    for name, vi, en in describe():
        print(f"{name}\n  vi: {vi}\n  en: {en}\n")
    return EXIT_OK


def _evaluate(args: argparse.Namespace, registry: Registry) -> int:
    if args.speed is not None and not (math.isfinite(args.speed) and args.speed > 0):
        print("--speed phải > 0 / must be > 0", file=sys.stderr)
        return EXIT_USAGE
    name = args.scenario

    def build(start: datetime) -> Scenario:
        return get_scenario(name, start=start, registry=registry)

    from smartward.stack import StackError

    try:
        ev = evaluate(build, registry=registry, speed=args.speed, seed=args.seed, broker=args.broker,
                      db_url=args.db, fast=args.fast, timeout_s=args.timeout, start=args.start,
                      progress=lambda line: print(line, file=sys.stderr, flush=True))
    except StartTooLateError as exc:
        print(f"{exc}", file=sys.stderr)
        return EXIT_USAGE
    except (StackError, TimeoutError) as exc:
        print(f"Đánh giá thất bại / evaluation failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(format_evaluation(ev))
    if args.check and (ev.score.recall < 1.0 or ev.score.precision < 0.9):
        return EXIT_FAILED
    return EXIT_OK


def _run(args: argparse.Namespace, registry: Registry) -> int:
    from edge.app import open_agent
    from edge.drivers.simulated import SimulatedDriver
    from edge.settings import EdgeSettings
    from simulators.clock import SimClock
    from simulators.fleet import GatewaySimulator

    if not (math.isfinite(args.speed) and args.speed > 0):
        print("--speed phải > 0 / must be > 0", file=sys.stderr)
        return EXIT_USAGE
    start = None
    if args.start:
        start = datetime.fromisoformat(args.start.replace("Z", "+00:00"))
        if start.tzinfo is None:
            print("--start cần múi giờ / needs a UTC offset", file=sys.stderr)
            return EXIT_USAGE
    settings = EdgeSettings(_env_file=os.environ.get("SMARTWARD_CONFIG"))
    try:
        clock = SimClock(speed=args.speed, start=start)
    except ValueError as exc:
        print(f"{exc}", file=sys.stderr)
        return EXIT_USAGE
    scenario = get_scenario(args.scenario, start=clock.start, registry=registry) if args.scenario else None
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("signal %s: stopping the fleet", signal.Signals(signum).name)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    with contextlib.ExitStack() as stack:
        if args.outbox:
            outbox_root = Path(args.outbox)
        elif "SMARTWARD_EDGE_OUTBOX" in os.environ:
            outbox_root = None
        else:
            outbox_root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="smartward-fleet-")))
        if outbox_root is not None:
            settings = settings.model_copy(update={"edge_outbox": str(outbox_root / "{gateway}")})
        agents = []
        threads = []
        for _, gw in registry.iter_gateways():
            sim = GatewaySimulator(registry, gw.id, seed=args.seed, scenario=scenario, start=clock.start)
            driver = SimulatedDriver(sim)
            agent = stack.enter_context(open_agent(settings, registry, gw.id, clock=clock, driver=driver,
                                                   link=driver))
            t = threading.Thread(target=agent.run, name=f"edge-{gw.id}", daemon=True)
            t.start()
            stack.callback(t.join, 30.0)
            stack.callback(agent.stop)
            agents.append(agent)
            threads.append(t)
        print(f"Đội {len(agents)} cổng mô phỏng / fleet of {len(agents)} simulated gateways, "
              f"×{args.speed:g} từ / from {clock.start:%Y-%m-%d %H:%M} UTC"
              + (f", kịch bản / scenario {args.scenario}" if args.scenario else ""), flush=True)
        deadline = time.monotonic() + args.duration if args.duration else math.inf
        while not stop.wait(min(10.0, max(0.0, deadline - time.monotonic()))):
            _print_fleet(agents, clock.now())
            if time.monotonic() >= deadline or not any(t.is_alive() for t in threads):
                break
        for a in agents:
            a.stop()
    _print_fleet(agents, clock.now())
    return EXIT_OK


def _print_fleet(agents: Sequence[object], now: datetime) -> None:
    readings = batches = depth = connected = 0
    for a in agents:
        st = a.snapshot()  # type: ignore[attr-defined]
        readings += st.counters.readings
        batches += st.counters.batches_created
        depth += st.outbox.batches if st.outbox is not None else 0
        connected += st.connected
    print(f"{now:%Y-%m-%d %H:%M:%S} UTC  cổng kết nối / connected {connected}/{len(agents)}  "
          f"số đo / readings {readings}  lô / batches {batches}  chờ xác nhận / unacked {depth}", flush=True)
