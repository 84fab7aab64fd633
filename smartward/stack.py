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

Everything is closed in reverse order (an ``ExitStack``): the edge agents first (they seal what
they hold and say ``offline``), then the ops service (final snapshot), the ingest, the stores,
the broker, the work directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import math
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import SecretStr

from contract import topics
from contract.brokers import BrokerUrl
from contract.registry import Registry
from ops_center.adapters.factory import open_repository
from ops_center.adapters.repository import OpsRepository
from ops_center.feed import Feed
from ops_center.rulebook.loader import load_patterns, load_rules
from ops_center.service.service import OpsService, ServiceProgress
from ops_center.service.settings import OpsServiceSettings
from simulators.faults import LinkOutage
from simulators.scenarios import Scenario

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
_CONFIG = Path(__file__).resolve().parents[1] / "deploy" / "mosquitto" / "smartward.conf"
_HELD_RECHECK_S = 0.05
_IDLE_S = 60.0
_GOVERN_S = 0.05
_BEFORE = timedelta(milliseconds=1)  # barriers sit just before a link drops


class StackError(Exception):
    """The stack cannot start or a wait ran out."""


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# --- brokers -------------------------------------------------------------------------------------


def render_mosquitto_config(template: str, *, port: int, data_dir: Path, log_path: Path) -> str:
    """The shipped configuration with a private loopback listener (open to local clients),
    data directory and log file."""
    out: list[str] = []
    for line in template.splitlines():
        words = line.split()
        key = words[0] if words and not words[0].startswith("#") else None
        if key == "listener":
            out.append(f"listener {port} {HOST}")
        elif key == "persistence_location":
            out.append(f"persistence_location {data_dir}/")
        elif key in ("log_dest", "user", "password_file", "acl_file", "use_username_as_clientid"):
            continue
        elif key == "allow_anonymous":
            # A private broker on a loopback port for one run (evaluation, benchmarks): no
            # gateway accounts to generate, so it is open to local clients.
            out.append("allow_anonymous true")
        else:
            out.append(line)
    # As root Mosquitto would switch to the `mosquitto` user, which cannot write our directory.
    out += [f"log_dest file {log_path}", f"user {getpass.getuser()}"]
    return "\n".join(out) + "\n"


def _wait_port(port: int, deadline: float, alive: Callable[[], bool]) -> None:
    while time.monotonic() < deadline:
        if not alive():
            raise StackError("the broker exited at start")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.2):
            return
        time.sleep(0.02)  # a process we started has no readiness event: a bounded poll
    raise StackError(f"no broker on {HOST}:{port} in time")


class MosquittoBroker:
    """A private Mosquitto on a free port, from the project's configuration file."""

    def __init__(self, workdir: Path, *, binary: str = "/usr/sbin/mosquitto",
                 config: Path = _CONFIG) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.binary = binary
        data = workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "mosquitto.log"
        self.config_path = workdir / "mosquitto.conf"
        try:
            template = config.read_text()
        except OSError as exc:
            raise StackError(f"no broker configuration at {config}: {exc}") from exc
        self.config_path.write_text(render_mosquitto_config(template, port=self.port, data_dir=data,
                                                            log_path=self.log_path))
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{HOST}:{self.port}"

    def start(self, timeout_s: float = 15.0) -> MosquittoBroker:
        try:
            self._proc = subprocess.Popen([self.binary, "-c", str(self.config_path)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=True)
        except OSError as exc:
            raise StackError(f"cannot run mosquitto ({self.binary}): {exc}") from exc
        proc = self._proc
        _wait_port(self.port, time.monotonic() + timeout_s, lambda: proc.poll() is None)
        return self

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None


class EmbeddedBroker:
    """amqtt in a background thread (its own event loop)."""

    def __init__(self) -> None:
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._broker: Any = None
        self._thread = threading.Thread(target=self._run, name="amqtt-broker", daemon=True)

    @property
    def url(self) -> str:
        # amqtt 0.12 speaks MQTT 3.1.1 only: every component connects with that protocol.
        return f"mqtt://{HOST}:{self.port}?protocol=3.1.1"

    def _run(self) -> None:
        from amqtt.broker import Broker

        asyncio.set_event_loop(self._loop)
        config = {"listeners": {"default": {"type": "tcp", "bind": f"{HOST}:{self.port}"}},
                  "auth": {"allow-anonymous": True, "plugins": ["auth_anonymous"]},
                  "topic-check": {"enabled": False}}
        try:
            self._broker = Broker(config, loop=self._loop)
            self._loop.run_until_complete(self._broker.start())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()

    def start(self, timeout_s: float = 15.0) -> EmbeddedBroker:
        self._thread.start()
        if not self._ready.wait(timeout_s) or self._error is not None:
            raise StackError(f"the embedded broker did not start: {self._error}")
        return self

    def stop(self) -> None:
        if self._broker is not None and self._loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
            with contextlib.suppress(Exception):
                fut.result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


def clear_retained(url: str, registry: Registry, timeout_s: float = 10.0) -> None:
    """Remove the retained status and ack of every gateway (an empty retained message,
    MQTT-3.3.1-10): a run on a shared broker must not inherit a previous run's watermarks,
    which would let a fresh edge delete batches nobody stored."""
    b = BrokerUrl.parse(url)
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"smartward-clear-{uuid.uuid4().hex[:8]}",
                    protocol=mqtt.MQTTv5 if b.mqtt5 else mqtt.MQTTv311)
    c.username_pw_set(b.username, b.password)
    c.connect(b.host, b.port)
    c.loop_start()
    try:
        infos = [c.publish(topics.build(site.id, gw.id, kind), b"", qos=1, retain=True)
                 for site, gw in registry.iter_gateways() for kind in ("status", "ack")]
        deadline = time.monotonic() + timeout_s
        for info in infos:
            info.wait_for_publish(timeout=max(0.1, deadline - time.monotonic()))
    finally:
        c.disconnect()
        c.loop_stop()


# --- the shared clock ----------------------------------------------------------------------------


class PacedClock:
    """``SimClock`` semantics (a start in the past, ``speed`` times real time, never ahead of the
    wall clock), plus: it can be held (the governor), it waits at ``barriers`` until each is
    passed, and it stops for good at ``stop_at``.

    Implements the edge's ``Clock`` (``now``, ``real_seconds_until``) and the simulators'.
    """

    def __init__(self, *, start: datetime, speed: float, stop_at: datetime | None = None,
                 barriers: Sequence[datetime] = (),
                 wall: Callable[[], datetime] = lambda: datetime.now(UTC),
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"speed must be a positive number (got {speed})")
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        if start > wall():
            raise ValueError("start is in the future: readings would be stamped ahead of the wall clock")
        self.start = start
        self.speed = speed
        self.stop_at = stop_at
        self._wall = wall
        self._mono = monotonic
        self._lock = threading.Lock()
        self._base = start.timestamp()
        self._base_mono = monotonic()
        self._held = False
        self._held_since = 0.0
        self._barriers = sorted(b.timestamp() for b in barriers if b > start)
        self.held_s = 0.0  # real seconds spent held (how much the pipeline slowed the clock)

    def _raw(self, mono: float) -> float:
        return self._base if self._held else self._base + self.speed * (mono - self._base_mono)

    def _limit(self) -> float | None:
        """Where the clock waits: the next barrier, or the stop."""
        stop = None if self.stop_at is None else self.stop_at.timestamp()
        barrier = self._barriers[0] if self._barriers else None
        if barrier is None or (stop is not None and stop <= barrier):
            return stop
        return barrier

    def _cap(self) -> float:
        cap = self._wall().timestamp()
        limit = self._limit()
        return cap if limit is None else min(cap, limit)

    def now(self) -> datetime:
        with self._lock:
            t = min(self._raw(self._mono()), self._cap())
        return datetime.fromtimestamp(t, UTC)

    def real_seconds_until(self, t: datetime) -> float:
        target = t.timestamp()
        with self._lock:
            raw = self._raw(self._mono())
            now = min(raw, self._cap())
            if target <= now:
                return target - now
            limit = self._limit()
            if limit is not None and target > limit:
                if now >= limit:  # waiting at a barrier (re-check soon) or stopped for good
                    return _IDLE_S if limit == self._stop_s() else _HELD_RECHECK_S
                target = limit  # wake when the clock gets there, to say so
            if self._held:
                return _HELD_RECHECK_S
            return max((target - raw) / self.speed, target - self._wall().timestamp(), 0.0)

    def _stop_s(self) -> float | None:
        return None if self.stop_at is None else self.stop_at.timestamp()

    @property
    def held(self) -> bool:
        return self._held

    def hold(self) -> None:
        with self._lock:
            if self._held:
                return
            mono = self._mono()
            self._base = min(self._raw(mono), self._cap())
            self._held = True
            self._held_since = mono

    def release(self) -> None:
        with self._lock:
            if not self._held:
                return
            mono = self._mono()
            self._held = False
            self._base_mono = mono
            self.held_s += mono - self._held_since

    def set_speed(self, speed: float) -> None:
        """Change the rate from now on (no jump)."""
        if not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"speed must be a positive number (got {speed})")
        with self._lock:
            if speed == self.speed:
                return
            mono = self._mono()
            self._base = min(self._raw(mono), self._cap())
            self._base_mono = mono
            self.speed = speed

    def next_barrier(self) -> datetime | None:
        with self._lock:
            return datetime.fromtimestamp(self._barriers[0], UTC) if self._barriers else None

    def pass_barrier(self) -> None:
        """Let the clock go on past the barrier it waits at (from there, not from where it
        would have been)."""
        with self._lock:
            if not self._barriers:
                return
            mono = self._mono()
            self._base = min(self._raw(mono), self._cap())
            self._base_mono = mono
            self._barriers.pop(0)

    def finished(self) -> bool:
        return self.stop_at is not None and self.now() >= self.stop_at


# --- counters ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StackCounters:
    sim_time: datetime
    readings_stored: dict[str, int]  # per site
    dead_letters: int
    outbox_depth: dict[str, int]  # per gateway: batches not yet covered by the ack watermark
    open_incidents: int  # stored, not resolved
    ops: ServiceProgress | None  # None while the ops service is down
    clock_held_s: float

    def lines(self) -> list[str]:
        stored = ", ".join(f"{s} {n}" for s, n in sorted(self.readings_stored.items()))
        depth = ", ".join(f"{g} {n}" for g, n in sorted(self.outbox_depth.items()) if n)
        return [
            f"thời gian mô phỏng / simulated time: {self.sim_time:%Y-%m-%d %H:%M:%S} UTC",
            f"số đo đã lưu / readings stored: {stored or 0}",
            f"thư chết / dead letters: {self.dead_letters}",
            f"hàng đợi biên / outbox depth: {depth or 0}",
            f"sự cố đang mở / open incidents: {self.open_incidents}",
        ]


class StoreCounts:
    """Read-only counts from the shared store (its own connection; SQL only, as the
    components share the store, never code)."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url

    def _rows(self, query: str) -> list[tuple[Any, ...]]:
        if self.db_url.startswith("sqlite:///"):
            path = self.db_url[len("sqlite:///"):]
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
            try:
                return list(conn.execute(query).fetchall())
            finally:
                conn.close()
        import psycopg

        with psycopg.connect(self.db_url, connect_timeout=5) as pg:
            return list(pg.execute(query.encode()).fetchall())

    def readings_by_site(self) -> dict[str, int]:
        return {str(s): int(n) for s, n in self._rows("SELECT site, count(*) FROM readings GROUP BY site")}

    def dead_letters(self) -> int:
        rows = self._rows("SELECT count(*) FROM dead_letters")
        return int(rows[0][0]) if rows else 0


# --- the stack -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Edge:
    gateway: str
    agent: Any  # edge.agent.Agent
    thread: threading.Thread


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
        self._edges: list[_Edge] = []
        self._governor_stop = threading.Event()
        self.service: OpsService | None = None
        self.broker_url = ""
        self.db_url = ""
        self.workdir = Path()
        self._outages = [e for e in scenario.events if isinstance(e, LinkOutage)] if scenario else []
        self.clock = PacedClock(start=t0, speed=speed, stop_at=stop_at,
                                barriers=self._barriers() if governor else ())
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
            gov = threading.Thread(target=self._govern, name="stack-governor", daemon=True)
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
        self._edges.append(_Edge(gateway, agent, thread))

    def _signal_edges(self) -> None:
        for e in self._edges:
            e.agent.stop()

    @property
    def agents(self) -> dict[str, Any]:
        return {e.gateway: e.agent for e in self._edges}

    # --- the governor -------------------------------------------------------------------------------

    def _behind(self) -> bool:
        now = self.clock.now()
        scen = self.scenario
        # While the ops service is down (a crash test), the fleet goes on: the broker keeps
        # what the service's persistent session misses.
        svc = self.service
        through = svc.progress().through if svc is not None else None
        for e in self._edges:
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

    def _barriers(self) -> list[datetime]:
        """Two per outage: where the slow approach to it begins, and just before it."""
        lead = timedelta(seconds=2 * self.flush_s)
        return [t for o in self._outages for t in (o.start - lead, o.start - _BEFORE)]

    def _approaching_outage(self, now: datetime) -> bool:
        """In the two flush intervals before an outage the clock runs slowly enough (a flush
        interval per half second) for the gateways to poll and seal as they would live."""
        lead = timedelta(seconds=2 * self.flush_s)
        return any(o.start - lead <= now < o.start for o in self._outages)

    def _may_pass(self, barrier: datetime) -> bool:
        """At a barrier before an outage: its gateways have stepped there, and every batch they
        sealed is stored and evaluated. The ops center places an outage after the last batch it
        saw, so at any speed the outage is seen where it would be at real speed (at most a
        flush interval early)."""
        if self.service is None:
            return False
        through = self.service.progress().through
        lead = timedelta(seconds=2 * self.flush_s)
        for e in self._edges:
            if not any(e.gateway in o.gateways and (o.start - lead <= barrier < o.start)
                       for o in self._outages):
                continue
            st = e.agent.snapshot()
            if st.at < barrier or st.outbox is None or st.outbox.batches or st.inflight:
                return False
            if through.get(e.gateway, 0) < st.outbox.last_seq:
                return False
        return True

    def _govern(self) -> None:
        while not self._governor_stop.wait(_GOVERN_S):  # a control loop, not a synchronisation
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

    # --- observation ----------------------------------------------------------------------------------

    def counters(self) -> StackCounters:
        counts = StoreCounts(self.db_url)
        prog = self.service.progress() if self.service is not None else None
        open_incidents = sum(n for by_severity in self.repo.open_incident_counts(None).values()
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
