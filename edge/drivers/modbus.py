"""Modbus TCP and RTU devices, read with pymodbus (client side).

One connection per line (a TCP ``host:port`` or a serial port), shared by every sensor
behind it, each line polled by its own thread so a slow or dead device never holds up the
agent or the other lines. A thread reads its requests (:mod:`edge.drivers.modbus_map`)
every ``poll_s`` and hands the readings over; ``poll`` collects them on the agent's thread.
A request that fails (no answer in ``timeout_s``, a garbled frame, an exception code) gives
no reading at all: it is counted (``driver_errors``) and read again at the next poll.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from contract.models import Reading
from contract.registry import ModbusRtuDriver, ModbusTcpDriver, SensorSpec
from edge.clock import Clock
from edge.drivers.inbox import DriverInbox
from edge.drivers.modbus_map import ILLEGAL_DATA_ADDRESS, Request, plan, quality_of, split_gaps, values_of
from edge.errors import DriverError

logger = logging.getLogger(__name__)

ModbusSpec = ModbusTcpDriver | ModbusRtuDriver

class ModbusClient(Protocol):
    """What the driver uses of a pymodbus synchronous client."""

    @property
    def connected(self) -> bool: ...
    def connect(self) -> bool: ...
    def close(self) -> None: ...
    def read_holding_registers(self, address: int, *, count: int = ..., device_id: int = ...) -> Any: ...
    def read_input_registers(self, address: int, *, count: int = ..., device_id: int = ...) -> Any: ...


ClientFactory = Callable[[ModbusSpec, float], ModbusClient]


def pymodbus_client(spec: ModbusSpec, timeout_s: float) -> ModbusClient:
    """A pymodbus client for the line of ``spec``; retries are ours (the next poll)."""
    try:
        from pymodbus.client import ModbusSerialClient, ModbusTcpClient
    except ImportError as exc:
        raise DriverError(f"cannot load pymodbus ({exc}); install the 'edge' extra: "
                          "pip install 'smartward[edge]'") from exc
    # pymodbus logs every failed read as an error of its own; ours (one line, counted) suffice.
    pm = logging.getLogger("pymodbus")
    if pm.level == logging.NOTSET:
        pm.setLevel(logging.CRITICAL)
    client: ModbusClient
    if isinstance(spec, ModbusTcpDriver):
        client = ModbusTcpClient(spec.host, port=spec.port, timeout=timeout_s, retries=0)
    else:
        client = ModbusSerialClient(spec.port, baudrate=spec.baudrate, parity=spec.parity,
                                    stopbits=spec.stopbits, bytesize=spec.bytesize, timeout=timeout_s,
                                    retries=0)
    return client


def line_of(spec: ModbusSpec) -> str:
    return f"tcp://{spec.host}:{spec.port}" if isinstance(spec, ModbusTcpDriver) else f"rtu:{spec.port}"


class ReadFailed(Exception):
    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(slots=True)
class _Poll:
    period_s: float  # real seconds
    requests: list[Request]
    due: float = 0.0  # monotonic


@dataclass(frozen=True, slots=True)
class CheckRow:
    """One value of ``edge check``: the value, or why there is none."""

    sensor: str
    metric: str
    value: float | None
    error: str | None = None
    quality: str = "good"


class _Line:
    """One connection and the requests read over it."""

    def __init__(self, name: str, client: ModbusClient, polls: list[_Poll]) -> None:
        self.name = name
        self.client = client
        self.polls = polls

    def read(self, req: Request) -> list[int]:
        c = self.client
        try:
            if not c.connected and not c.connect():
                raise ReadFailed(f"{self.name}: cannot connect")
            fn = c.read_holding_registers if req.table == "holding" else c.read_input_registers
            rr = fn(req.start, count=req.count, device_id=req.unit)
        except ReadFailed:
            raise
        except Exception as exc:  # pymodbus raises ModbusException, OSError, serial errors...
            # A garbled or late answer may leave bytes on the line: start afresh next time.
            c.close()
            raise ReadFailed(f"{self.name}: {type(exc).__name__}: {exc}") from exc
        if rr.isError():
            code = getattr(rr, "exception_code", None)
            raise ReadFailed(f"{self.name}: unit {req.unit} answered exception code {code}", code)
        regs = list(rr.registers)
        if len(regs) < req.count:
            raise ReadFailed(f"{self.name}: unit {req.unit} answered {len(regs)} of {req.count} registers")
        return regs


class ModbusDriver:
    """The Modbus sensors of one gateway (a :class:`~edge.drivers.base.Driver` that also
    reports its failed reads through ``take_errors``)."""

    def __init__(
        self,
        sensors: Sequence[SensorSpec],
        clock: Clock,
        *,
        time_scale: float = 1.0,
        client_factory: ClientFactory = pymodbus_client,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._monotonic = monotonic
        self._inbox = DriverInbox()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        groups: dict[str, list[SensorSpec]] = {}
        for s in sensors:
            if isinstance(s.driver, ModbusTcpDriver | ModbusRtuDriver):
                groups.setdefault(line_of(s.driver), []).append(s)
        self.lines: list[_Line] = []
        for name, members in groups.items():
            specs = [m.driver for m in members if isinstance(m.driver, ModbusTcpDriver | ModbusRtuDriver)]
            client = client_factory(specs[0], max(d.timeout_s for d in specs))
            by_poll: dict[tuple[int, int], list[tuple[str, Any]]] = {}
            for m, d in zip(members, specs, strict=True):
                for reg in d.registers:
                    by_poll.setdefault((d.unit, m.poll_s), []).append((m.id, reg))
            polls = [_Poll(period_s=poll_s / time_scale, requests=plan(unit, items))
                     for (unit, poll_s), items in sorted(by_poll.items())]
            self.lines.append(_Line(name, client, polls))

    @property
    def requests(self) -> int:
        """Requests per round of every poll (for tests and the benchmark)."""
        return sum(len(p.requests) for line in self.lines for p in line.polls)

    # -- the agent's side ---------------------------------------------------------------------

    def start(self) -> None:
        for line in self.lines:
            t = threading.Thread(target=self._run, args=(line,), name=f"modbus {line.name}", daemon=True)
            t.start()
            self._threads.append(t)

    def close(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout_s)
        for line in self.lines:
            line.client.close()

    def poll(self, now: datetime) -> list[Reading]:
        return self._inbox.poll()

    def take_errors(self) -> int:
        return self._inbox.take_errors()

    def check(self) -> list[CheckRow]:
        """Read every register once, now, on this thread (``smartward edge check``)."""
        rows: list[CheckRow] = []
        for line in self.lines:
            for p in line.polls:
                for req in p.requests:
                    rows.extend(self._check_request(line, req))
            line.client.close()
        return rows

    # -- the line threads ------------------------------------------------------------------------

    def _run(self, line: _Line) -> None:
        start = self._monotonic()
        for p in line.polls:
            p.due = start
        while not self._stop.is_set():
            now = self._monotonic()
            for p in line.polls:
                if now >= p.due:
                    try:
                        self._read_poll(line, p)
                    except Exception:  # the line thread's top: a bug must not end the polling
                        logger.exception("%s: poll failed", line.name)
                        self._inbox.put(errors=1)
                    # Next round one period later; after a stall past it, one period from now.
                    nxt, after = p.due + p.period_s, self._monotonic()
                    p.due = nxt if nxt > after else after + p.period_s
            wait = min(p.due for p in line.polls) - self._monotonic()
            if wait > 0:
                self._stop.wait(wait)

    def _read_poll(self, line: _Line, p: _Poll) -> None:
        for req in list(p.requests):
            if self._stop.is_set():
                return
            try:
                regs = line.read(req)
            except ReadFailed as exc:
                self._count_error(exc)
                if exc.code == ILLEGAL_DATA_ADDRESS and req.has_gaps:
                    logger.warning("%s: unit %d refuses reads across unmapped registers; reading "
                                   "registers %d-%d in gap-free pieces from now on",
                                   line.name, req.unit, req.start, req.start + req.count - 1)
                    i = p.requests.index(req)
                    p.requests[i:i + 1] = split_gaps(req)
                continue
            ts = self._clock.now()
            readings: list[Reading] = []
            bad = 0
            for it, value in values_of(req, regs):
                if value is None:
                    bad += 1
                    continue
                m = it.register.metric
                readings.append(Reading(it.sensor, m, ts, value, quality_of(m, value)))
            self._inbox.put(readings, errors=bad)

    def _count_error(self, exc: ReadFailed) -> None:
        self._inbox.put(errors=1)
        logger.warning("modbus read failed (read again at the next poll): %s", exc)

    def _check_request(self, line: _Line, req: Request) -> list[CheckRow]:
        try:
            regs = line.read(req)
        except ReadFailed as exc:
            return [CheckRow(it.sensor, it.register.metric, None, str(exc)) for it in req.items]
        rows = []
        for it, value in values_of(req, regs):
            m = it.register.metric
            if value is None:
                rows.append(CheckRow(it.sensor, m, None, "not a number"))
            else:
                rows.append(CheckRow(it.sensor, m, value, None, quality_of(m, value)))
        return rows
