"""The whole platform in one process: broker, ingest, ops service and a simulated fleet.

For demos, evaluations (``smartward sim evaluate``), benchmarks and end-to-end tests::

    with Stack(registry, scenario=scenario, speed=720) as stack:
        stack.wait_drained(timeout_s=120)
        print(stack.counters())

What runs (each a thread of this process, except the broker):

- a broker: ``"mosquitto"`` starts a private Mosquitto on a free port with the shipped
  configuration (deploy/mosquitto/smartward.conf); ``"embedded"`` an amqtt broker in a thread
  (amqtt 0.12 speaks MQTT 3.1.1 only: its URL carries ``?protocol=3.1.1``, which every
  component honours); or the URL of a running broker;
- the ingest worker (its own store connection) and the ops service (its own subscription,
  store connection and change feed), on one database (SQLite in the work directory unless a
  URL is given);
- one edge agent per gateway with the simulated driver, ALL on one shared simulated clock,
  their outboxes in the work directory.

The clock follows ``SimClock``'s rules (it starts in the past and never runs ahead of the wall
clock: the ingest refuses readings from the future) and runs at most ``speed`` times real time;
a governor holds it while the pipeline is behind (a gateway whose link is up with more than
``max_backlog_batches`` batches not yet stored or not yet evaluated by the ops service), so a
high ``speed`` means "as fast as the pipeline can take it". Link outages of the scenario are
lived through, not skipped: the clock waits before each until its gateways have delivered what
they sealed, slows down over the last two flush intervals before it, and waits for the agents
to notice each link change. With ``stop_at`` the clock stops there, which bounds a run.

Beside it: ``smartward/stack_broker.py`` (the brokers), ``smartward/paced_clock.py`` (the
clock), ``smartward/stack_counts.py`` (what it reports).

Everything is closed in reverse order (an ``ExitStack``): the edge agents first (they seal what
they hold and say ``offline``), then the ops service (final snapshot), the ingest, the stores,
the broker, the work directory.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from pydantic import SecretStr

from contract.registry import Registry
from ops_center.adapters.factory import open_repository
from ops_center.adapters.repository import OpsRepository
from ops_center.feed import Feed
from ops_center.rulebook.loader import load_patterns, load_rules
from ops_center.service.service import OpsService
from ops_center.service.settings import OpsServiceSettings
from simulators.faults import LinkOutage
from simulators.scenarios import Scenario
from smartward.governor import EdgeRun, Governor, barriers
from smartward.paced_clock import PacedClock
from smartward.stack_broker import (
    EmbeddedBroker,
    MosquittoBroker,
    StackError,
    clear_retained,
    free_port,
)
from smartward.stack_counts import StackCounters, StoreCounts

# free_port, MosquittoBroker, StackError: also imported from here by the benchmarks and the demo.
__all__ = ["MosquittoBroker", "Stack", "StackCounters", "StackError", "free_port"]

logger = logging.getLogger(__name__)



# --- the stack -----------------------------------------------------------------------------------


class Stack:
    def __init__(
        self,
        registry: Registry,
        *,
        broker: str = "mosquitto",
        db_url: str | None = None,
        scenario: Scenario | None = None,
        speed: float = 60.0,
        seed: int = 0,
        start: datetime | None = None,
        stop_at: datetime | None = None,
        workdir: Path | None = None,
        gateways: Sequence[str] | None = None,
        flush_s: float = 60.0,
        poll_s: float = 10.0,
        tick_interval_s: float = 0.5,
        snapshot_interval_s: float = 2.0,
        governor: bool = True,
        max_backlog_batches: int = 16,
        feed: Feed | None = None,
        clear_broker: bool = False,
        tag: str | None = None,
    ) -> None:
        self.registry = registry
        self.broker_choice = broker
        self.scenario = scenario
        self.speed = speed
        self.seed = seed
        t0 = start or (scenario.start if scenario is not None else None)
        if t0 is None:
            t0 = datetime.now(UTC) - timedelta(seconds=speed * 3600.0)
        self.start_at = t0
        self.stop_at = stop_at
        self.gateway_ids = list(gateways) if gateways is not None else [g.id for _, g in
                                                                       registry.iter_gateways()]
        self.flush_s = flush_s
        self.poll_s = poll_s
        self.tick_interval_s = tick_interval_s
        self.snapshot_interval_s = snapshot_interval_s
        self.governor_on = governor
        self.max_backlog_batches = max_backlog_batches
        self.feed = feed if feed is not None else Feed()
        self.clear_broker = clear_broker
        self.tag = tag or uuid.uuid4().hex[:8]
        self._workdir_arg = workdir
        self._db_url_arg = db_url
        self._stack = contextlib.ExitStack()
        self._edges: list[EdgeRun] = []
        self._governor_stop = threading.Event()
        self.service: OpsService | None = None
        self.broker_url = ""
        self.db_url = ""
        self.workdir = Path()
        self._outages = [e for e in scenario.events if isinstance(e, LinkOutage)] if scenario else []
        self.clock = PacedClock(start=t0, speed=speed, stop_at=stop_at,
                                barriers=barriers(self._outages, flush_s) if governor else ())
        self._governor = Governor(self.clock, scenario=scenario, outages=self._outages, speed=speed,
                                  flush_s=flush_s, max_backlog_batches=max_backlog_batches,
                                  edges=lambda: self._edges, service=lambda: self.service)
        self.clock.hold()  # no simulated time passes while the stack starts

    # --- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def start(self, timeout_s: float = 30.0) -> None:
        from ingest.metrics import IngestMetrics
        from ingest.settings import IngestSettings
        from ingest.stores import open_store
        from ingest.worker import IngestWorker

        s = self._stack
        deadline = time.monotonic() + timeout_s
        if self._workdir_arg is None:
            self.workdir = Path(s.enter_context(tempfile.TemporaryDirectory(prefix="smartward-stack-")))
        else:
            self.workdir = self._workdir_arg
            self.workdir.mkdir(parents=True, exist_ok=True)

        # Broker.
        if self.broker_choice == "mosquitto":
            mosq = MosquittoBroker(self.workdir / "broker").start()
            s.callback(mosq.stop)
            self.broker_url = mosq.url
        elif self.broker_choice == "embedded":
            emb = EmbeddedBroker()
            s.callback(emb.stop)
            emb.start()
            self.broker_url = emb.url
        else:
            self.broker_url = self.broker_choice
            if self.clear_broker:
                clear_retained(self.broker_url, self.registry)

        # Stores: the ingest's, the ops repository (reads, API), the service's own
        # repository connection and its snapshot table, all on one database.
        self.db_url = self._db_url_arg or f"sqlite:///{self.workdir / 'smartward.db'}"
        store = open_store(self.db_url)
        s.callback(store.close)
        store.migrate()
        self.repo: OpsRepository = open_repository(self.db_url)
        s.callback(self.repo.close)
        self.repo.migrate()
        self._service_repo = open_repository(self.db_url)
        s.callback(self._service_repo.close)

        # Ingest.
        ingest_settings = IngestSettings(mqtt_url=self.broker_url, db_url=self.db_url,
                                         session_expiry_s=3600, stop_grace_s=2.0)
        self.ingest_metrics = IngestMetrics()
        self.ingest = IngestWorker(ingest_settings, store, self.registry, metrics=self.ingest_metrics,
                                   client_id=f"smartward-ingest-{self.tag}")
        # A batch published before the SUBSCRIBE is granted never reaches the ingest (the edge
        # re-sends after its ack timeout, but a run should not start with that).
        ingest_subscribed = self.ingest.source.subscribed
        self.ingest.start()
        s.callback(self.ingest.stop)
        # Rollups (readings_1m, readings_1h: the VN_AQI and the charts read them), on their own
        # connection and thread, as `smartward ingest run` keeps them.
        from ingest import housekeeping

        upkeep_store = open_store(self.db_url)
        s.callback(upkeep_store.close)
        s.enter_context(housekeeping.running(upkeep_store))

        # Ops service (stopped through a callback: restart_ops may replace it).
        self._rules = load_rules(registry=self.registry)
        self._patterns = load_patterns()
        self.start_ops()
        s.callback(self.stop_ops)

        if not ingest_subscribed.wait(max(0.0, deadline - time.monotonic())):
            raise StackError("ingest not subscribed in time")
        assert self.service is not None
        if not self.service.link.subscribed.wait(max(0.0, deadline - time.monotonic())):
            raise StackError("ops service not subscribed in time")

        # Edge agents. On close: all are told to stop at once, then each is joined before its
        # outbox closes.
        for gw in self.gateway_ids:
            self._start_edge(gw)
        s.callback(self._signal_edges)
        if self.governor_on:
            gov = threading.Thread(target=self._governor.run, args=(self._governor_stop,),
                                   name="stack-governor", daemon=True)
            gov.start()
            s.callback(gov.join, 5.0)
            s.callback(self._governor_stop.set)
        else:
            self.clock.release()
        logger.info("stack up: broker %s, store %s, %d gateways, clock from %s at ×%g", self.broker_url,
                    self._redacted_db(), len(self._edges), self.start_at.isoformat(), self.speed)

    def close(self) -> None:
        self._stack.close()

    def _redacted_db(self) -> str:
        url = self.db_url
        if "@" in url and "://" in url:
            scheme, rest = url.split("://", 1)
            return f"{scheme}://***@{rest.split('@', 1)[1]}"
        return url

    # --- ops service (restartable, for crash tests) ------------------------------------------------

    def ops_settings(self) -> OpsServiceSettings:
        return OpsServiceSettings(mqtt_url=self.broker_url, db_url=self.db_url,
                                  ops_tick_interval_s=self.tick_interval_s,
                                  ops_snapshot_interval_s=self.snapshot_interval_s,
                                  ops_session_expiry_s=3600)

    def start_ops(self) -> OpsService:
        if self.service is not None:
            raise StackError("the ops service is running")
        svc = OpsService(self.ops_settings(), self.registry, self._service_repo, self.feed,
                         rules=self._rules, patterns=self._patterns, name=f"ops-{self.tag}",
                         client_id=f"smartward-ops-{self.tag}")
        svc.start()
        self.service = svc
        return svc

    def crash_ops(self) -> None:
        """Stop the ops service as a crash would: no final snapshot, nothing acknowledged."""
        if self.service is not None:
            self.service.abort()
            self.service = None

    def stop_ops(self) -> None:
        """Stop the ops service gracefully (final snapshot); what follows waits in the broker."""
        if self.service is not None:
            self.service.stop()
            self.service = None

    # --- edges ------------------------------------------------------------------------------------

    def _start_edge(self, gateway: str) -> None:
        from edge.app import open_agent
        from edge.drivers.simulated import SimulatedDriver
        from edge.settings import EdgeSettings
        from simulators.fleet import GatewaySimulator

        settings = EdgeSettings(
            mqtt_url=SecretStr(self.broker_url),
            edge_outbox=str(self.workdir / "outbox" / "{gateway}"),
            edge_flush_interval_ms=int(self.flush_s * 1000),
            edge_poll_interval_ms=int(self.poll_s * 1000),
            edge_ack_timeout_s=5.0,
            edge_status_interval_s=30.0,
            edge_backlog_batches_per_s=200.0,
        )
        sim = GatewaySimulator(self.registry, gateway, seed=self.seed, scenario=self.scenario,
                               start=self.start_at)
        driver = SimulatedDriver(sim)
        agent = self._stack.enter_context(open_agent(settings, self.registry, gateway, clock=self.clock,
                                                     driver=driver, link=driver))
        thread = threading.Thread(target=agent.run, name=f"edge-{gateway}", daemon=True)
        thread.start()
        self._stack.callback(thread.join, 30.0)
        self._stack.callback(agent.stop)
        self._edges.append(EdgeRun(gateway, agent, thread))

    def _signal_edges(self) -> None:
        for e in self._edges:
            e.agent.stop()

    @property
    def agents(self) -> dict[str, Any]:
        return {e.gateway: e.agent for e in self._edges}

    # --- observation ----------------------------------------------------------------------------------

    def counters(self) -> StackCounters:
        counts = StoreCounts(self.db_url)
        prog = self.service.progress() if self.service is not None else None
        open_incidents = sum(n for by_severity in self.repo.incidents.open_incident_counts(None).values()
                             for n in by_severity.values())
        depth = {}
        for e in self._edges:
            st = e.agent.snapshot()
            depth[e.gateway] = st.outbox.batches if st.outbox is not None else 0
        return StackCounters(
            sim_time=self.clock.now(), readings_stored=counts.readings_by_site(),
            dead_letters=counts.dead_letters(), outbox_depth=depth, open_incidents=open_incidents,
            ops=prog, clock_held_s=self.clock.held_s,
        )

    def wait_clock(self, until: datetime, timeout_s: float) -> None:
        """Until every edge agent has stepped at or past ``until`` (clock time)."""
        deadline = time.monotonic() + timeout_s
        for e in self._edges:
            e.agent.wait_until(lambda st: st.at >= until, max(0.0, deadline - time.monotonic()))

    def wait_drained(self, timeout_s: float) -> None:
        """Until every sealed batch is stored (edge outboxes empty under the ack watermark) and
        evaluated by the ops service. With ``stop_at``, first until the clock reached it."""
        deadline = time.monotonic() + timeout_s
        if self.stop_at is not None:
            self.wait_clock(self.stop_at, timeout_s)
        last: dict[str, int] = {}
        for e in self._edges:
            st = e.agent.wait_until(lambda st: st.outbox is not None and st.outbox.batches == 0
                                    and st.inflight == 0, max(0.0, deadline - time.monotonic()))
            assert st.outbox is not None
            last[e.gateway] = st.outbox.last_seq
        if self.service is None:
            raise StackError("the ops service is not running")
        self.service.wait_until(
            lambda p: all(p.through.get(g, 0) >= seq for g, seq in last.items() if seq)
            and p.queue_depth == 0,
            max(0.0, deadline - time.monotonic()))
