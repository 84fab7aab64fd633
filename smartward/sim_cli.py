"""``smartward sim ...``: simulated fleets and scenario evaluations.

    smartward sim list
    smartward sim run --scenario flood-evening --speed 60 [--seed 1] [--duration 600]
    smartward sim evaluate --scenario flood-evening [--speed 900] [--seed 1]
                           [--broker mosquitto|embedded|mqtt://host:port] [--db URL] [--fast]
                           [--start 2026-11-16T00:00]

``run`` drives one edge agent per gateway of the registry (simulated sensors, one shared
simulated clock) against the broker at ``SMARTWARD_MQTT_URL``, as a real fleet would.

``evaluate`` (smartward/sim_eval.py) runs a scenario through the REAL pipeline (broker → edge
agents → ingest and ops service → store) on a fast clock until the scenario's simulated end,
then scores the incidents the ops center STORED against the scenario's ground truth
(``simulators.scoring``): precision, recall, alert compression, time to detect. The clock
starts far enough in the past that it never reaches the wall clock before the scenario ends (a
simulated clock never runs ahead of the wall clock: the ingest refuses readings from the
future). ``--start`` pins the start instead (local time): the simulated world depends on the
date and the noise on how many readings precede an event, so only a pinned start reproduces a
run.
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
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from types import FrameType

from contract.errors import RegistryError
from contract.registry import Registry, load_registry
from simulators.scenarios import SCENARIOS, Scenario, describe, get_scenario
from smartward.sim_eval import StartTooLateError, evaluate, format_evaluation, parse_start

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2



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
