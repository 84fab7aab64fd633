"""The edge budget with Modbus devices: ``smartward bench edge --drivers modbus``.

20 Modbus TCP devices (pymodbus servers in a child process, so their work is not counted)
with 10 registers each, polled every 60 s by the agent, which publishes to a real broker
while a small acker plays the ingest. ``--speed`` compresses the clock (polls every
60/speed s); the CPU figure is also given per real-time minute (divided by the speed).
Prints CPU % of one core (user + system time of this process over the wall time) and the
resident memory (now and peak).

    smartward bench edge --drivers modbus --url mqtt://127.0.0.1:1883 --duration 300
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any

from contract.brokers import BrokerUrl
from contract.registry import Registry, parse_registry
from edge.app import open_agent
from edge.clock import ScaledClock
from edge.drivers.modbus import ModbusDriver
from edge.settings import EdgeSettings

GATEWAY = "bench-gw-01"
# 10 registers a device: a wastewater station (7), a power meter (2), a flood sensor (1).
_KINDS = (("wastewater", ("ww_ph", "ww_temp_c", "ww_cod", "ww_tss", "ww_nh4", "ww_flow_in_m3h",
                          "ww_flow_out_m3h")),
          ("power_meter", ("power_kw", "power_factor")),
          ("flood_depth", ("water_level_cm",)))


def bench_registry(ports: Sequence[int], poll_s: int) -> Registry:
    sensors = []
    for d, port in enumerate(ports):
        address = 0
        for kind, metrics in _KINDS:
            regs = []
            for m in metrics:
                regs.append(f"{{metric: {m}, address: {address}, type: uint16, scale: 0.01}}")
                address += 1
            sensors.append(f"""          - id: dev{d:02d}-{kind.replace('_', '-')}
            kind: {kind}
            interval_s: {poll_s}
            driver:
              type: modbus-tcp
              host: 127.0.0.1
              port: {port}
              registers: [{", ".join(regs)}]
""")
    return parse_registry(f"""version: 1
sites:
  - id: bench
    name: {{vi: "Đo hiệu năng", en: "Benchmark"}}
    kind: ward
    location: {{lat: 20.44, lon: 106.168}}
    gateways:
      - id: {GATEWAY}
        sensors:
{"".join(sensors)}""")


# -- the devices (child process) ------------------------------------------------------------------


def serve(count: int) -> None:
    """Run ``count`` Modbus TCP servers on free ports; print the ports, serve until stdin closes."""
    import socket

    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    async def main() -> None:
        servers = []
        ports = []
        for _ in range(count):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            device = SimDevice(1, simdata=[SimData(0, count=16, values=1000, datatype=DataType.REGISTERS)])
            server = ModbusTcpServer([device], address=("127.0.0.1", port))
            servers.append(asyncio.ensure_future(server.serve_forever()))
            ports.append(port)
        await asyncio.sleep(0.5)
        print(json.dumps(ports), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        for t in servers:
            t.cancel()

    asyncio.run(main())


# -- the measurement --------------------------------------------------------------------------------


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run(url: str, *, devices: int, duration_s: float, speed: float, poll_s: int) -> dict[str, Any]:
    from bench.edge import Acker

    child = subprocess.Popen([sys.executable, "-m", "bench.edge_modbus", "--serve", str(devices)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        ports = json.loads(child.stdout.readline())
        registry = bench_registry(ports, poll_s)
        sensors = registry.sensors_of(GATEWAY)
        registers = sum(len(s.driver.registers) for s in sensors if hasattr(s.driver, "registers"))
        broker = BrokerUrl.parse(url)
        acker = Acker(broker, "bench", GATEWAY)
        try:
            with tempfile.TemporaryDirectory(prefix="smartward-bench-") as outbox:
                settings = EdgeSettings(mqtt_url=url, edge_outbox=outbox)
                clock = ScaledClock(speed=speed)
                driver = ModbusDriver(sensors, clock, time_scale=speed)
                with open_agent(settings, registry, GATEWAY, clock=clock, driver=driver) as agent:
                    thread = threading.Thread(target=agent.run, name="bench-agent")
                    thread.start()
                    driver.start()
                    agent.wait_until(lambda s: s.connected and s.counters.readings >= registers, 60)
                    # measure from the first full round on: start-up (imports, connections) excluded
                    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
                    n0 = agent.snapshot().counters.readings
                    threading.Event().wait(duration_s)
                    r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
                    stats = agent.snapshot()
                    rss = _rss_mb()
                    agent.stop()
                    thread.join(30)
                    driver.close()
        finally:
            acker.close()
    finally:
        if child.stdin is not None:
            child.stdin.close()
        child.wait(30)
    cpu_s = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    wall = t1 - t0
    cpu_pct = 100 * cpu_s / wall
    c = stats.counters
    return {
        "devices": devices, "registers": registers, "poll_s": poll_s, "speed": speed,
        "requests_per_round": driver.requests, "seconds": round(wall, 1),
        "readings": c.readings - n0, "batches_published": c.batches_published,
        "driver_errors": c.driver_errors,
        "cpu_pct_of_a_core": round(cpu_pct, 2),
        "cpu_pct_of_a_core_at_real_time": round(cpu_pct / speed, 3),
        "rss_mb": round(rss, 1), "peak_rss_mb": round(r1.ru_maxrss / 1024, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="smartward bench edge --drivers modbus",
                                     description="Ngân sách tác tử biên với thiết bị Modbus / "
                                                 "edge budget with Modbus devices")
    parser.add_argument("--drivers", choices=("modbus",), default="modbus")
    parser.add_argument("--url", default="mqtt://127.0.0.1:1883", help="broker (default %(default)s)")
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--poll-s", type=int, default=60, help="poll period, clock seconds (default 60)")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="đồng hồ nén / compressed clock: polls every poll-s/speed real seconds")
    parser.add_argument("--duration", type=float, default=300.0, help="measured real seconds (default 300)")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0
    result = run(args.url, devices=args.devices, duration_s=args.duration, speed=args.speed,
                 poll_s=args.poll_s)
    print(json.dumps(result))
    ok = result["cpu_pct_of_a_core_at_real_time"] <= 2.0 and result["peak_rss_mb"] <= 80
    print(f"{'ĐẠT / PASS' if ok else 'KHÔNG ĐẠT / FAIL'}: CPU ≤ 2 % of a core, RSS ≤ 80 MB", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
