"""The governor of a one-process stack (smartward/stack.py): holds the shared clock while
the pipeline is behind, slows it before each link outage of the scenario and lets it pass the
outage's barriers only once the gateways' batches are stored and evaluated."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ops_center.service.service import OpsService
from simulators.faults import LinkOutage
from simulators.scenarios import Scenario
from smartward.paced_clock import PacedClock

logger = logging.getLogger("smartward.stack")

_GOVERN_S = 0.05
_BEFORE = timedelta(milliseconds=1)  # barriers sit just before a link drops


@dataclass(frozen=True, slots=True)
class EdgeRun:
    """One edge agent of the stack, and its thread."""

    gateway: str
    agent: Any  # edge.agent.Agent
    thread: threading.Thread


def barriers(outages: Sequence[LinkOutage], flush_s: float) -> list[datetime]:
    """Two per outage: where the slow approach to it begins, and just before it."""
    lead = timedelta(seconds=2 * flush_s)
    return [t for o in outages for t in (o.start - lead, o.start - _BEFORE)]


class Governor:
    def __init__(self, clock: PacedClock, *, scenario: Scenario | None, outages: Sequence[LinkOutage],
                 speed: float, flush_s: float, max_backlog_batches: int,
                 edges: Callable[[], Sequence[EdgeRun]],
                 service: Callable[[], OpsService | None]) -> None:
        self.clock = clock
        self.scenario = scenario
        self.outages = list(outages)
        self.speed = speed
        self.flush_s = flush_s
        self.max_backlog_batches = max_backlog_batches
        self._edges = edges
        self._service = service

    def _behind(self) -> bool:
        now = self.clock.now()
        scen = self.scenario
        # While the ops service is down (a crash test), the fleet goes on: the broker keeps
        # what the service's persistent session misses.
        svc = self._service()
        through = svc.progress().through if svc is not None else None
        for e in self._edges():
            up = scen is None or scen.link_up(e.gateway, now)
            st = e.agent.snapshot()
            # A link change must be lived through, not skipped: hold until the agent has
            # noticed it and (dis)connected, so a 2-hour outage is an outage for the broker
            # (Last Will) and the ops center at any speed.
            if st.link_up != up or st.connected != up:
                return True
            if not up or st.outbox is None:
                continue
            # Behind, in batches (independent of the clock's speed): not yet stored (the
            # outbox under the ack watermark), or not yet evaluated by the ops service.
            backlog = st.outbox.batches
            if through is not None:
                backlog = max(backlog, st.outbox.last_seq - through.get(e.gateway, 0))
            if backlog > self.max_backlog_batches:
                return True
        return False

    def _approaching_outage(self, now: datetime) -> bool:
        """In the two flush intervals before an outage the clock runs slowly enough (a flush
        interval per half second) for the gateways to poll and seal as they would live."""
        lead = timedelta(seconds=2 * self.flush_s)
        return any(o.start - lead <= now < o.start for o in self.outages)

    def _may_pass(self, barrier: datetime) -> bool:
        """At a barrier before an outage: its gateways have stepped there, and every batch they
        sealed is stored and evaluated. The ops center places an outage after the last batch it
        saw, so at any speed the outage is seen where it would be at real speed (at most a
        flush interval early)."""
        svc = self._service()
        if svc is None:
            return False
        through = svc.progress().through
        lead = timedelta(seconds=2 * self.flush_s)
        for e in self._edges():
            if not any(e.gateway in o.gateways and (o.start - lead <= barrier < o.start)
                       for o in self.outages):
                continue
            st = e.agent.snapshot()
            if st.at < barrier or st.outbox is None or st.outbox.batches or st.inflight:
                return False
            if through.get(e.gateway, 0) < st.outbox.last_seq:
                return False
        return True

    def run(self, stop: threading.Event) -> None:
        """Until ``stop``: hold the clock while the pipeline is behind, pass barriers."""
        while not stop.wait(_GOVERN_S):  # a control loop, not a synchronisation
            try:
                now = self.clock.now()
                self.clock.set_speed(min(self.speed, 2 * self.flush_s) if self._approaching_outage(now)
                                     else self.speed)
                barrier = self.clock.next_barrier()
                if barrier is not None and now >= barrier and self._may_pass(barrier):
                    self.clock.pass_barrier()
                if self._behind():
                    self.clock.hold()
                else:
                    self.clock.release()
            except Exception:  # the governor must never take the stack down
                logger.exception("governor step failed")
        self.clock.release()
