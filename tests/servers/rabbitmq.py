"""RabbitMQ nodes for tests, started from the project's own configuration (deploy/rabbitmq).

Each node runs from Debian's ``rabbitmq-server`` with its own node name, ports (AMQP, MQTT,
Erlang distribution), data directory, log directory and Erlang cookie (``HOME``), so a system
RabbitMQ on 5672 is never touched. The shipped ``rabbitmq.conf`` is rendered with the test's
listeners and a small disk limit (the shipped 2 GB would block publishers on a full test disk).

Fixtures:
    rabbitmq          (function) factory: ``rabbitmq(nodes=1)`` -> a started :class:`RabbitCluster`
                      (1 node, or N nodes joined with ``rabbitmqctl join_cluster``); every node
                      has an administrator account ``smartward``/``PASSWORD``; all are stopped
                      at teardown.

A missing ``rabbitmq-server`` is a failure under CI (``CI=true``) and a skip elsewhere.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from tests.servers._proc import (
    ServerError,
    free_port,
    kill9,
    log_tail_message,
    missing_server,
    port_open,
    start_process,
    stop_process,
    wait_until,
)

HOST = "127.0.0.1"
DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "rabbitmq"
SBIN = Path(os.environ.get("SMARTWARD_RABBITMQ_SBIN", "/usr/lib/rabbitmq/bin"))
USER = "smartward"
PASSWORD = "test-rabbit-pw"
# Settings the fixture replaces (listeners: ports of its own; log: a file; disk: small).
_REPLACED = ("listeners.tcp.", "mqtt.listeners.", "log.", "disk_free_limit.")


def render_config(template: str, *, mqtt_port: int, extra: Sequence[str] = ()) -> str:
    kept = [line for line in template.splitlines()
            if not line.strip().startswith(_REPLACED)]
    # The AMQP listener comes from RABBITMQ_NODE_IP_ADDRESS/PORT (a listener in the file as
    # well makes 3.10 bind the port twice).
    ours = [f"mqtt.listeners.tcp.default = {HOST}:{mqtt_port}", "log.console = false",
            "log.file = rabbit.log", "log.file.level = info", "disk_free_limit.absolute = 50MB",
            *extra]
    return "\n".join([*kept, "", "# --- tests/servers/rabbitmq.py ---", *ours, ""])


class RabbitNode:
    """One node. ``name`` is the short node name (``name@localhost``)."""

    def __init__(self, workdir: Path, name: str, home: Path, config: str) -> None:
        self.workdir = workdir
        self.name = name
        self.node = f"{name}@localhost"
        self.home = home
        self.amqp_port = free_port()
        self.mqtt_port = free_port()
        self.dist_port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "rabbitmq.conf").write_text(
            render_config(config, mqtt_port=self.mqtt_port))
        (workdir / "enabled_plugins").write_text((DEPLOY / "enabled_plugins").read_text())
        self.log_path = workdir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        w = self.workdir
        return {**os.environ, "HOME": str(self.home), "RABBITMQ_NODENAME": self.node,
                "RABBITMQ_NODE_IP_ADDRESS": HOST, "RABBITMQ_NODE_PORT": str(self.amqp_port),
                "RABBITMQ_DIST_PORT": str(self.dist_port),
                "RABBITMQ_CONFIG_FILE": str(w / "rabbitmq.conf"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(w / "enabled_plugins"),
                "RABBITMQ_MNESIA_BASE": str(w / "mnesia"), "RABBITMQ_LOG_BASE": str(w / "log"),
                "RABBITMQ_PID_FILE": str(w / "pid"), "ERL_CRASH_DUMP": str(w / "erl_crash.dump"),
                # Erlang distribution on loopback only.
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}"}

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def mqtt_url(self, user: str = USER, password: str = PASSWORD) -> str:
        return f"mqtt://{user}:{password}@{HOST}:{self.mqtt_port}?protocol=3.1.1"

    def start(self, *, timeout_s: float = 90.0) -> None:
        self.proc = start_process([str(SBIN / "rabbitmq-server")], self.log_path, env=self.env(),
                                  cwd=self.workdir)
        # The listeners open last in the boot sequence (after the plugins).
        wait_until(lambda: port_open(HOST, self.amqp_port) and port_open(HOST, self.mqtt_port),
                   timeout_s=timeout_s, what=f"RabbitMQ node {self.node}", alive=lambda: self.running,
                   log_path=self.workdir / "log" / "rabbit.log")

    def ctl(self, *args: str, timeout_s: float = 90.0, check: bool = True) -> str:
        """``rabbitmqctl -n NODE args...``; its output (ServerError on failure when ``check``)."""
        run = subprocess.run([str(SBIN / "rabbitmqctl"), "-n", self.node, *args], env=self.env(),
                             capture_output=True, text=True, timeout=timeout_s, check=False)
        if check and run.returncode != 0:
            raise ServerError(f"rabbitmqctl {' '.join(args)} on {self.node}: rc={run.returncode}\n"
                              f"{run.stdout[-2000:]}{run.stderr[-2000:]}")
        return run.stdout

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout_s=30)

    def kill9(self) -> None:
        if self.proc is not None:
            kill9(self.proc)

    def log_text(self) -> str:
        path = self.workdir / "log" / "rabbit.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def describe(self) -> str:
        return f"{self.node} amqp={self.amqp_port} mqtt={self.mqtt_port}{log_tail_message(self.log_path)}"


class RabbitCluster:
    """One or more nodes sharing an Erlang cookie; node 0 is the first member."""

    def __init__(self, workdir: Path, n: int) -> None:
        tag = uuid.uuid4().hex[:6]
        home = workdir / "home"
        home.mkdir(parents=True, exist_ok=True)
        cookie = home / ".erlang.cookie"
        cookie.write_text(uuid.uuid4().hex.upper())
        cookie.chmod(0o400)
        config = (DEPLOY / "rabbitmq.conf").read_text()
        self.nodes = [RabbitNode(workdir / f"n{i}", f"sw{tag}n{i}", home, config) for i in range(n)]

    def start(self) -> None:
        first = self.nodes[0]
        first.start()
        for node in self.nodes[1:]:
            node.start()
            node.ctl("stop_app")
            node.ctl("join_cluster", first.node)
            node.ctl("start_app")
        first.ctl("add_user", USER, PASSWORD)
        first.ctl("set_user_tags", USER, "administrator")
        first.ctl("set_permissions", "-p", "/", USER, ".*", ".*", ".*")
        if len(self.nodes) > 1:
            out = first.ctl("cluster_status")
            missing = [n.node for n in self.nodes if n.node not in out]
            if missing:
                raise ServerError(f"nodes not in the cluster: {missing}\n{out}")

    def amqp_url(self, queue: str = "smartward.telemetry", user: str = USER,
                 password: str = PASSWORD) -> str:
        nodes = ",".join(f"{HOST}:{n.amqp_port}" for n in self.nodes)
        return f"amqp://{user}:{password}@{nodes}/%2F?queue={queue}"

    def mqtt_url(self, user: str = USER, password: str = PASSWORD) -> str:
        """Every node, in order (the edge and the ingest fail over along the list)."""
        return ",".join(n.mqtt_url(user, password) for n in self.nodes)

    def queue_leader(self, queue: str) -> RabbitNode:
        """The node that leads ``queue`` (quorum queues: the Raft leader)."""
        out = self.running_node().ctl("list_queues", "name", "leader", "--no-table-headers", "-q")
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == queue:
                for node in self.nodes:
                    if node.node == parts[1]:
                        return node
        raise ServerError(f"no leader for {queue!r} in:\n{out}")

    def running_node(self) -> RabbitNode:
        return next(n for n in self.nodes if n.running)

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()


RabbitFactory = Callable[..., RabbitCluster]


def _check_installed() -> None:
    if not (SBIN / "rabbitmq-server").exists():
        missing_server("rabbitmq-server", f"no {SBIN / 'rabbitmq-server'} (apt-get install rabbitmq-server)")


@pytest.fixture
def rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitFactory]:
    _check_installed()
    made: list[RabbitCluster] = []

    def make(nodes: int = 1) -> RabbitCluster:
        cluster = RabbitCluster(tmp_path_factory.mktemp("rabbitmq"), nodes)
        made.append(cluster)
        cluster.start()
        return cluster

    yield make
    for cluster in made:
        cluster.stop()


def message_counts(node: RabbitNode, queue: str) -> tuple[int, int]:
    """(ready, unacknowledged) of ``queue``."""
    out = node.ctl("list_queues", "name", "messages_ready", "messages_unacknowledged",
                   "--no-table-headers", "-q")
    for line in out.splitlines():
        m = re.match(rf"^{re.escape(queue)}\s+(\d+)\s+(\d+)", line)
        if m:
            return int(m.group(1)), int(m.group(2))
    return 0, 0
