"""R10: a random schedule of R2 / R3 / R4 / R7 for minutes, several gateways.

Everything real: the shipped Mosquitto configuration, TimescaleDB, the ingest as a process
(`python -m ingest.cli run`), and three edge agents (the command line's composition root, with
the synthetic driver as ground truth) that reach the broker through a TCP proxy each — their
mobile link. A seeded schedule, printed for a replay, picks one infrastructure fault at a time:

- R2: the broker `kill -9`, restarted after a while on the same port and data directory;
- R3: the ingest `kill -9`, restarted after a while;
- R7: TimescaleDB `pg_ctl stop -m immediate`, started after a while;

while a second schedule cuts one gateway's link at a time (R4: the proxy blackholes it, then
the link comes back). When the schedule ends and every gateway has drained its outbox, the
store must hold every batch each gateway created, exactly once, with every reading the driver
produced, no dead letter and no open seq gap: lost 0, dup 0, gaps 0.

``SMARTWARD_R10_SECONDS`` (default 120) and ``SMARTWARD_R10_SEED`` (default 10) set the run.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from contract.registry import load_registry
from edge.agent import Agent
from edge.drivers.synthetic import SyntheticDriver
from tests.faults.tcp_proxy import TcpProxy
from tests.integration.test_edge_mqtt import T0, drained, edge_agent
from tests.integration.test_ingest_faults import workers
from tests.servers.mosquitto import MosquittoFactory
from tests.support.accounting import assert_every_batch_stored_once
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
__all__ = ["workers"]

REGISTRY = load_registry()
CHAOS_S = float(os.environ.get("SMARTWARD_R10_SECONDS", "120"))
SEED = int(os.environ.get("SMARTWARD_R10_SEED", "10"))
GATEWAYS = ("tn-gw-01", "qt-gw-01", "ax-gw-02")
SPEED = 30.0  # simulated seconds per real second: a batch every 5 simulated s → 6 per second


Fault = tuple[Callable[..., None], Callable[..., None]]  # (apply, undo)


class Chaos:
    """Runs a fault schedule in a thread; every fault is undone before the next one starts."""

    def __init__(self, name: str, seed: int, faults: Mapping[str, Fault],
                 hold_s: tuple[float, float], calm_s: tuple[float, float], until: float) -> None:
        self.name = name
        self.rng = random.Random(seed)
        self.faults = faults
        self.hold_s, self.calm_s = hold_s, calm_s
        self.until = until
        self.log: list[str] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"chaos-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self._thread.join(CHAOS_S + 120)
        assert not self._thread.is_alive(), f"{self.name} schedule did not end"
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        import time

        try:
            while time.monotonic() < self.until:
                self._stop.wait(self.rng.uniform(*self.calm_s))
                name = self.rng.choice(sorted(self.faults))
                hold = self.rng.uniform(*self.hold_s)
                self.log.append(f"{name} for {hold:.1f} s")
                apply, undo = self.faults[name]
                apply()
                try:
                    self._stop.wait(hold)  # the fault lasts: nothing to wait for but time
                finally:
                    undo()
        except BaseException as exc:  # re-raised in the test's thread by join()
            self.error = exc


@contextlib.contextmanager
def agents(tmp_path: Path, proxies: dict[str, TcpProxy], end: Any) -> Iterator[dict[str, Agent]]:
    with contextlib.ExitStack() as stack:
        out = {}
        for gw in GATEWAYS:
            driver = SyntheticDriver(REGISTRY.sensors_of(gw), start=T0, end=end)
            out[gw] = stack.enter_context(edge_agent(tmp_path / gw, proxies[gw].url, speed=SPEED, end=end,
                                                     driver=driver, gateway=gw))
        yield out


def test_random_faults_for_minutes_lose_duplicate_and_gap_nothing(
    tmp_path: Path, mosquitto: MosquittoFactory, make_timescale: Callable[[], Any],
    workers: Callable[..., Any],
) -> None:
    import time

    broker = mosquitto()
    pg = make_timescale()
    db_url = pg.fresh_db("r10")
    ingest = workers(broker.url, db_url, "r10-ingest")
    ingest.start()
    wait_until(ingest.ready, 60, "ingest ready")
    proxies = {gw: TcpProxy("127.0.0.1", broker.port) for gw in GATEWAYS}
    end = T0 + timedelta(seconds=(CHAOS_S + 10) * SPEED)

    def restart_ingest() -> None:
        ingest.start()

    infra = Chaos("infrastructure", SEED, {
        "R2 broker kill -9": (broker.kill9, broker.start),
        "R3 ingest kill -9": (ingest.kill9, restart_ingest),
        "R7 database down": (pg.stop_immediate, pg.start),
    }, hold_s=(2.0, 8.0), calm_s=(3.0, 8.0), until=time.monotonic() + CHAOS_S)
    link_faults = {f"R4 {gw} without signal": (lambda gw=gw: proxies[gw].set_mode("blackhole"),
                                               lambda gw=gw: proxies[gw].set_mode("pass"))
                   for gw in GATEWAYS}
    links = Chaos("links", SEED + 1, link_faults, hold_s=(3.0, 12.0), calm_s=(2.0, 6.0),
                  until=time.monotonic() + CHAOS_S)
    try:
        with agents(tmp_path, proxies, end) as running:
            infra.start()
            links.start()
            infra.join()
            links.join()
            schedule = "\n  ".join([*infra.log, *links.log])
            print(f"R10 schedule (seed {SEED}):\n  {schedule}")
            assert len(infra.log) >= 3 and len(links.log) >= 3, "the schedule made too few faults"
            wait_until(ingest.ready, 60, "ingest ready after the schedule")
            finals = {gw: a.wait_until(drained(end), 180) for gw, a in running.items()}
    finally:
        for p in proxies.values():
            p.close()

    assert_every_batch_stored_once(db_url, finals, REGISTRY, start=T0, end=end)
