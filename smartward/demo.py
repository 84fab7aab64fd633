"""``smartward demo``: the whole platform in one process, with embedded defaults.

An embedded MQTT broker (amqtt, in-process), the ingest into SQLite, the ops service, and
one edge agent per gateway of the bundled Nam Định registry reading simulated sensors on a
fast clock (a scenario with floods, a gas leak, an outage...), plus the operations API
with one demo user per role. Nothing to install or start; ``--duration S`` ends it.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import uvicorn

    from smartward.stack import Stack

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
_API_STOP_S = 10.0  # the API finishes its requests and stops its command link
_API_START_S = 30.0  # the API binds its port and starts (a loaded machine included)
# The replay's clock starts this many real seconds (at --speed) before the scenario's first
# expected incident, so a newcomer sees one open within the demo's first minute.
FIRST_INCIDENT_LEAD_S = 15.0
_SEVERITY_VI = {"info": "thông tin", "warning": "cảnh báo", "critical": "nghiêm trọng",
                "emergency": "khẩn cấp"}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="smartward demo",
        description="Toàn bộ nền tảng trong một tiến trình, dữ liệu mô phỏng / "
                    "the whole platform in one process, on simulated data")
    p.add_argument("--port", type=int, default=8000, help="cổng HTTP của API / API port (default 8000)")
    p.add_argument("--host", default="127.0.0.1", help="địa chỉ nghe / listen address (default 127.0.0.1)")
    p.add_argument("--duration", type=float, help="dừng sau số giây thực này / stop after S real seconds")
    p.add_argument("--scenario", default="mixed-week",
                   help="kịch bản mô phỏng / simulator scenario (default mixed-week; `smartward sim list`)")
    p.add_argument("--speed", type=float, default=600.0,
                   help="tốc độ đồng hồ mô phỏng / simulated clock speed-up (default 600)")
    p.add_argument("--seed", type=int, default=1, help="hạt giống / random seed (default 1)")
    p.add_argument("--data", help="thư mục dữ liệu / data directory (default: a temporary one)")
    p.add_argument("--broker", default="embedded",
                   help="embedded (mặc định / default), mosquitto, or a broker URL")
    p.add_argument("--no-api", action="store_true", help="không chạy API / do not serve the API")
    p.add_argument("--every", type=float, default=5.0, help="in tóm tắt mỗi S giây / summary every S s")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    # The embedded broker and its state machine log every client event at INFO: keep the
    # demo's screen for the summary (logging is configured here, in the command).
    for noisy in ("amqtt", "transitions"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not (math.isfinite(args.speed) and args.speed > 0):
        print("--speed phải > 0 / must be > 0", file=sys.stderr)
        return EXIT_USAGE
    from contract.errors import RegistryError
    from contract.registry import load_registry
    from simulators.scenarios import UnknownScenarioError, get_scenario
    from smartward.stack import Stack, StackError

    try:
        registry = load_registry(os.environ.get("SMARTWARD_REGISTRY"))
    except RegistryError as exc:
        print(f"Sổ đăng ký sai / invalid registry: {exc}", file=sys.stderr)
        return EXIT_USAGE
    # The scenario starts far enough in the past to play out entirely before it reaches the
    # wall clock (no reading is ever stamped in the future); then the demo runs live.
    try:
        probe = get_scenario(args.scenario, start=datetime.now(UTC), registry=registry) \
            if args.scenario else None
        span_s = probe.duration_s if probe is not None else 3600.0
        start = (datetime.now(UTC) - timedelta(seconds=span_s + 600)).replace(microsecond=0)
        scenario = get_scenario(args.scenario, start=start, registry=registry) if args.scenario else None
        if scenario is not None:
            start = replay_start(start, [e.onset for e in scenario.expected], args.speed)
    except UnknownScenarioError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("signal %s: stopping the demo", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    workdir = Path(args.data) if args.data else None
    try:
        with Stack(registry, broker=args.broker, scenario=scenario, speed=args.speed, seed=args.seed,
                   start=start, workdir=workdir, clear_broker=args.broker not in {"embedded", "mosquitto"}
                   ) as stack:
            api = None if args.no_api else _serve_api(stack, args.host, args.port)
            print(f"smartward demo: {len(stack.gateway_ids)} cổng / gateways, "
                  f"{len(registry.sensors)} cảm biến / sensors, kịch bản / scenario "
                  f"{args.scenario or '-'}, ×{args.speed:g}; broker {stack.broker_url}; "
                  f"CSDL / store {stack.db_url}", flush=True)
            deadline = time.monotonic() + args.duration if args.duration else math.inf
            try:
                while not stop.wait(max(0.0, min(args.every, deadline - time.monotonic()))):
                    _print_summary(stack)
                    if time.monotonic() >= deadline:
                        break
                _print_summary(stack)
            finally:
                if api is not None:
                    # The API (and its command link) ends before the stack stops the broker.
                    server, thread = api
                    server.should_exit = True
                    thread.join(_API_STOP_S)
    except StackError as exc:
        print(f"Demo không khởi động được / the demo could not start: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print("Đã dừng / stopped.", flush=True)
    return EXIT_OK


def replay_start(scenario_start: datetime, onsets: list[datetime], speed: float,
                 lead_s: float = FIRST_INCIDENT_LEAD_S) -> datetime:
    """Where the demo's clock starts: ``lead_s`` real seconds before the first expected
    incident (the calm before it is skipped), never before the scenario."""
    if not onsets:
        return scenario_start
    return max(scenario_start, min(onsets) - timedelta(seconds=lead_s * speed)).replace(microsecond=0)


def _serve_api(stack: Stack, host: str, port: int) -> tuple[uvicorn.Server, threading.Thread]:
    """The operations API on ``host:port`` in a thread, with one demo user per role.
    (uvicorn installs signal handlers only on the main thread: the demo keeps its own.)"""
    import uvicorn
    from pydantic import SecretStr

    from ops_center.api.app import create_app
    from ops_center.security.users import create_demo_users
    from ops_center.settings import OpsSettings
    from smartward.stack import StackError

    service = stack.service
    assert service is not None
    # The demo's embedded broker has no accounts: the API's command link shares its URL.
    settings = OpsSettings(environment="demo", db_url=stack.db_url, mqtt_url=stack.broker_url,
                           secret_key=secrets.token_urlsafe(48),
                           commands_mqtt_url=SecretStr(stack.broker_url))
    users = create_demo_users(stack.repo.users, stack.registry)
    if service.notifier is not None:  # acknowledge links in messages verify with this API's key
        service.notifier.sender.use_ack_secret(settings.signing_key())

    def readiness() -> Mapping[str, bool]:
        return {"store": stack.repo.ping(), "broker": service.connected, "rules": service.ready}

    # Freshness against the replay's clock: while the scenario catches up with the wall clock
    # the screen shows the data as of the replayed time, not "silent" for every sensor.
    app = create_app(settings, stack.repo, stack.feed, readiness, registry=stack.registry,
                     on_action=service.on_action, data_clock=stack.clock.now)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False,
                                           proxy_headers=False))
    thread = threading.Thread(target=server.run, name="demo-api", daemon=True)
    thread.start()
    # uvicorn logs a port it cannot bind and returns: say so and stop, rather than run a demo
    # nobody can look at.
    deadline = time.monotonic() + _API_START_S
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        thread.join(0.05)
    if not server.started:
        server.should_exit = True
        raise StackError(f"API không mở được cổng {host}:{port} (đang bận?) / the API could not "
                         f"listen on {host}:{port} (in use?): --port chọn cổng khác / another port")
    print(f"API: http://{host}:{port}/api/v1  (OpenAPI /docs)", flush=True)
    print(f"Màn hình điều hành / operations screen: http://{host}:{port}/screen/", flush=True)
    print("Người dùng demo / demo users (name: password): " +
          ", ".join(f"{n}: {pw}" for n, pw in sorted(users.items())), flush=True)
    return server, thread


def _print_summary(stack: Stack) -> None:
    try:
        counters = stack.counters()
        incidents = stack.repo.incidents.list_incidents(None, "open", 8, 0)
    except Exception as exc:  # a summary line is never worth stopping the demo for
        logger.warning("summary unavailable: %s", exc)
        return
    lines = ["— " * 30, *counters.lines()]
    for inc in incidents.items:
        lines.append(f"  [{_SEVERITY_VI.get(inc.severity, inc.severity)}] {inc.site}: {inc.title_vi} "
                     f"/ {inc.title_en} (từ / since {inc.opened_at:%Y-%m-%d %H:%M} UTC)")
    print("\n".join(lines), flush=True)
