"""``smartward edge ...``: run the edge agent of one gateway.

    smartward edge run --gateway tn-gw-01 --simulate --speed 60 --stats
    python -m edge.cli run --gateway tn-gw-01 --driver synthetic --speed 120
    smartward edge run --gateway tn-gw-01          # the devices of the registry (Modbus, LoRaWAN)
    smartward edge check --gateway tn-gw-01        # read every device once, print a table

Settings come from the environment (``SMARTWARD_*``, see :mod:`edge.settings`) or from the
dotenv file named by ``SMARTWARD_CONFIG``; the options below override them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import ValidationError

from contract.errors import RegistryError
from contract.registry import Registry, load_registry
from edge import sdnotify
from edge.clock import Clock, ScaledClock, SystemClock
from edge.clockguard import ClockGuard, kernel_clock_synced
from edge.counters import EdgeStats
from edge.drivers.base import Driver, LinkProbe
from edge.drivers.simulated import open_simulation
from edge.drivers.synthetic import ScheduledLink, SyntheticDriver
from edge.errors import ConfigError, EdgeError

if TYPE_CHECKING:  # paho-mqtt (the edge extra) comes with these: imported when a command runs
    from edge.drivers.devices import DeviceDrivers
    from edge.settings import EdgeSettings

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _aware(text: str) -> datetime:
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if t.tzinfo is None:
        raise argparse.ArgumentTypeError("cần múi giờ / needs a UTC offset, e.g. 2026-11-28T05:00:00Z")
    return t


def _outage(text: str) -> tuple[float, float]:
    try:
        offset, duration = (float(x) for x in text.split(":"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError("dạng / format: OFFSET_S:DURATION_S, e.g. 600:7200") from exc
    return offset, duration


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smartward edge",
        description="Tác tử biên của một cổng / the edge agent of one gateway",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="<lệnh/command>")
    run = sub.add_parser("run", help="chạy tác tử biên / run the edge agent",
                         description="Đọc cảm biến, lưu lô vào hộp thư đi, gửi qua MQTT / "
                                     "read sensors, store batches in the outbox, publish over MQTT")
    run.add_argument("--gateway", required=True, help="mã cổng trong sổ đăng ký / gateway id in the registry")
    run.add_argument("--simulate", action="store_true",
                     help="đọc cảm biến mô phỏng (gói simulators) / read simulated sensors "
                          "(= --driver simulated)")
    run.add_argument("--driver", choices=("simulated", "synthetic"),
                     help="trình điều khiển: simulated (mô phỏng vật lý) hoặc synthetic (tất định, không cần "
                          "gói sim) / driver: simulated (physical simulators) or synthetic (deterministic)")
    run.add_argument("--speed", type=float, default=1.0,
                     help="tốc độ đồng hồ mô phỏng / simulated clock speed-up (default 1)")
    run.add_argument("--start", type=_aware,
                     help="thời điểm bắt đầu của đồng hồ mô phỏng / start of the simulated clock (RFC 3339)")
    run.add_argument("--outbox", help="thư mục hộp thư đi / outbox directory (SMARTWARD_EDGE_OUTBOX)")
    run.add_argument("--scenario", help="kịch bản mô phỏng / simulator scenario name")
    run.add_argument("--seed", type=int, default=0, help="hạt giống ngẫu nhiên / random seed (default 0)")
    run.add_argument("--outage", type=_outage, action="append", default=[], metavar="OFFSET_S:DURATION_S",
                     help="mất sóng giả lập (synthetic) / simulated signal loss, clock seconds from start")
    run.add_argument("--duration", type=float,
                     help="dừng sau số giây thực này / stop after this many real seconds")
    run.add_argument("--stats", action="store_true",
                     help="in bộ đếm (JSON) định kỳ và khi dừng / print counters (JSON) "
                          "periodically and at exit")
    check = sub.add_parser("check", help="đọc mọi thiết bị một lần / read every device once",
                           description="Đọc mỗi cảm biến của cổng qua trình điều khiển của nó một lần và in "
                                       "bảng / read each sensor of the gateway once through its driver and "
                                       "print a table")
    check.add_argument("--gateway", required=True,
                       help="mã cổng trong sổ đăng ký / gateway id in the registry")
    check.add_argument("--wait", type=float, default=5.0,
                       help="số giây chờ bản tin LoRaWAN / seconds to wait for LoRaWAN uplinks (default 5)")
    return parser


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))
    from edge.settings import EdgeSettings

    try:
        settings = EdgeSettings(_env_file=os.environ.get("SMARTWARD_CONFIG"))
        if getattr(args, "outbox", None):
            settings = settings.model_copy(update={"edge_outbox": args.outbox})
    except ValidationError as exc:
        print(f"Cấu hình sai / invalid settings:\n{exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        registry = load_registry(settings.registry)
    except RegistryError as exc:
        print(f"Sổ đăng ký sai / invalid registry: {exc}", file=sys.stderr)
        return EXIT_USAGE
    gateway = args.gateway
    if gateway not in registry.gateways:
        print(f"Không có cổng / unknown gateway: {gateway}", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "check":
        from edge.check import run_check

        try:
            return run_check(settings, registry, gateway, wait_s=args.wait)
        except EdgeError as exc:
            print(f"Lỗi / error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    driver_name = "simulated" if args.simulate else args.driver or "devices"
    try:
        return _run(args, settings, registry, gateway, driver_name)
    except ConfigError as exc:
        print(f"Cấu hình sai / invalid configuration: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except EdgeError as exc:
        logger.error("edge agent failed: %s", exc)
        return EXIT_FAILED


def _run(args: argparse.Namespace, settings: EdgeSettings, registry: Registry, gateway: str,
         driver_name: str) -> int:
    from edge.app import open_agent
    from edge.drivers.devices import open_devices

    clock: Clock
    driver: Driver
    link: LinkProbe | None
    devices: DeviceDrivers | None = None
    guard: ClockGuard | None = None
    if driver_name == "devices":
        clock = SystemClock()
        devices = open_devices(settings, gateway, registry.sensors_of(gateway), clock)
        driver, link = devices, None
        guard = ClockGuard(state_file=settings.outbox_dir(gateway) / "clock-floor",
                           synced=kernel_clock_synced)
    elif driver_name == "simulated":
        sim = open_simulation(registry, gateway, speed=args.speed, seed=args.seed, scenario=args.scenario,
                              start=args.start)
        clock, driver, link = sim.clock, sim.driver, sim.driver
    else:
        clock = (ScaledClock(speed=args.speed, start=args.start)
                 if args.speed != 1.0 or args.start is not None else SystemClock())
        t0 = clock.now()
        driver = SyntheticDriver(registry.sensors_of(gateway), start=t0)
        link = ScheduledLink((t0 + timedelta(seconds=o), t0 + timedelta(seconds=o + d))
                             for o, d in args.outage)

    def print_stats(stats: EdgeStats) -> None:
        print(json.dumps(stats.as_dict(), ensure_ascii=False), flush=True)

    def on_stats(stats: EdgeStats) -> None:
        # Called from the agent's loop every status interval: the systemd watchdog's proof
        # that the loop runs (WatchdogSec in deploy/systemd/smartward-edge@.service).
        sdnotify.notify("WATCHDOG=1")
        if args.stats:
            print_stats(stats)

    with open_agent(settings, registry, gateway, clock=clock, driver=driver, link=link,
                    on_stats=on_stats, guard=guard) as agent:
        def on_signal(signum: int, _frame: object) -> None:
            logger.info("signal %s: stopping", signal.Signals(signum).name)
            agent.stop()

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, on_signal)
            signal.signal(signal.SIGINT, on_signal)
        timer = threading.Timer(args.duration, agent.stop) if args.duration else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        if devices is not None:
            devices.start()
        feed = sdnotify.watchdog_interval_s()
        if feed is not None and settings.edge_status_interval_s > feed:
            logger.warning("SMARTWARD_EDGE_STATUS_INTERVAL_S=%s feeds systemd's watchdog too rarely "
                           "(every %.0f s needed): raise WatchdogSec", settings.edge_status_interval_s, feed)
        sdnotify.notify("READY=1")
        try:
            stats = agent.run()
        finally:
            sdnotify.notify("STOPPING=1")
            if timer is not None:
                timer.cancel()
            if devices is not None:
                devices.close()
    if args.stats:
        print_stats(stats)
    return EXIT_OK


if __name__ == "__main__":
    # `python -m edge.cli ...`: the same as `smartward edge ...` (which configures logging).
    from smartward.cli import main as smartward_main

    sys.exit(smartward_main(["edge", *sys.argv[1:]]))
