"""Real Modbus devices for the tests: pymodbus servers (TCP on a free port, RTU on one end of
a ``socat`` pseudo-terminal pair), each in its own thread with its own event loop.

A device can be taken down and brought back on the same address (an outage), made to garble
its answers (``garble = True`` corrupts each frame it sends), and holds a register map the
test sets (``set_holding``/``set_input``); ``delay_s`` makes it answer late (a timeout). An
address outside the map (``MAP_SIZE`` registers) answers exception code 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import shutil
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.servers._proc import free_port, missing_server, port_open, wait_until

HOST = "127.0.0.1"
MAP_SIZE = 200  # registers per table and unit


class ModbusDevice:
    """A pymodbus server with ``units`` (unit ids), each with holding and input registers."""

    def __init__(self, units: Sequence[int], *, port: int | None = None, serial: str | None = None,
                 baudrate: int = 9600) -> None:
        from pymodbus.simulator import DataType, SimData, SimDevice

        # One map per (unit, table), filled into pymodbus' registers on every request.
        self.maps: dict[tuple[int, str], list[int]] = {
            (u, t): [0] * MAP_SIZE for u in units for t in ("holding", "input")}
        self._devices = [
            SimDevice(u, simdata=[SimData(0, count=MAP_SIZE, values=0, datatype=DataType.REGISTERS)],
                      action=functools.partial(self._action, u))
            for u in units]
        self.port = port if port is not None or serial else free_port(HOST)
        self.serial = serial
        self.baudrate = baudrate
        self.garble = False
        self.delay_s = 0.0  # answer this late (a timeout for a client waiting less)
        self.requests = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None

    async def _action(self, unit: int, function_code: int, start_address: int, address: int, count: int,
                      registers: list[int], _values: Any) -> None:
        table = self.maps[(unit, "holding" if function_code == 3 else "input")]
        off = address - start_address
        registers[off:off + count] = table[address:address + count]
        if self.delay_s:
            await asyncio.sleep(self.delay_s)

    def set_holding(self, unit: int, address: int, words: Sequence[int]) -> None:
        self.maps[(unit, "holding")][address:address + len(words)] = list(words)

    def set_input(self, unit: int, address: int, words: Sequence[int]) -> None:
        self.maps[(unit, "input")][address:address + len(words)] = list(words)

    # -- lifecycle --------------------------------------------------------------------------------

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if sending:
            self.requests += 1
            if self.garble and data:
                # Flip bits in the middle of the frame: the MBAP length or the CRC no longer fits.
                mid = len(data) // 2
                return data[:mid] + bytes(b ^ 0x5A for b in data[mid:])
        return data

    def start(self, *, timeout_s: float = 10.0) -> ModbusDevice:
        from pymodbus.server import ModbusSerialServer, ModbusTcpServer

        ready = threading.Event()
        loop = asyncio.new_event_loop()
        self._loop = loop

        async def serve() -> None:
            if self.serial is None:
                self._server = ModbusTcpServer(self._devices, address=(HOST, self.port),
                                               trace_packet=self._trace)
            else:
                self._server = ModbusSerialServer(self._devices, port=self.serial, baudrate=self.baudrate,
                                                  trace_packet=self._trace)
            # Ready once it listens: the TCP socket bound, the serial line's pty opened (a
            # request written before that would be lost, and the first read would time out).
            await self._server.serve_forever(background=True)
            ready.set()
            with contextlib.suppress(asyncio.CancelledError):
                await self._server.serving

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(serve())
            loop.close()

        self._thread = threading.Thread(target=run, name=f"modbus server {self.port or self.serial}",
                                        daemon=True)
        self._thread.start()
        if not ready.wait(timeout_s):
            raise RuntimeError("modbus server did not start")
        if self.serial is None:
            wait_until(lambda: port_open(HOST, self.port), timeout_s=timeout_s,
                       what=f"modbus server on {self.port}")
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._loop is None or self._thread is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._server.shutdown(), self._loop)
        with contextlib.suppress(Exception):
            fut.result(timeout_s)
        self._thread.join(timeout_s)
        self._loop = None
        self._thread = None
        if self.serial is None:
            wait_until(lambda: not port_open(HOST, self.port), timeout_s=timeout_s,
                       what=f"modbus server {self.port} closed")


@pytest.fixture
def modbus_devices() -> Iterator[Any]:
    devices: list[ModbusDevice] = []

    def make(units: Sequence[int] = (1,), **kw: Any) -> ModbusDevice:
        d = ModbusDevice(units, **kw).start()
        devices.append(d)
        return d

    yield make
    for d in devices:
        d.stop()


class SerialPair:
    """Two linked pseudo-terminals made by ``socat``: what one end writes, the other reads."""

    def __init__(self, workdir: Path) -> None:
        self.a = str(workdir / "ttyA")
        self.b = str(workdir / "ttyB")
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 10.0) -> SerialPair:
        socat = shutil.which("socat")
        if socat is None:
            missing_server("socat", "the socat binary is not on PATH")
        self._proc = subprocess.Popen(
            [socat, "-d", "-d", f"pty,raw,echo=0,link={self.a}", f"pty,raw,echo=0,link={self.b}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: Path(self.a).exists() and Path(self.b).exists(), timeout_s=timeout_s,
                   what="socat pty pair")
        return self

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)
            self._proc = None


@pytest.fixture
def serial_pair(tmp_path: Path) -> Iterator[SerialPair]:
    pair = SerialPair(tmp_path).start()
    yield pair
    pair.stop()


def holding_map(values: Mapping[int, Sequence[int]]) -> dict[int, list[int]]:
    return {a: list(w) for a, w in values.items()}
