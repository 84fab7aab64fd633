"""RabbitMQ nodes for tests, started from the project's own configuration (deploy/rabbitmq).

Each node runs from Debian's ``rabbitmq-server`` with its own node name, ports (AMQP, MQTT,
Erlang distribution), data directory, log directory and Erlang cookie (``HOME``), so a system
RabbitMQ on 5672 is never touched. The shipped ``rabbitmq.conf`` is rendered with the test's
listeners and a small disk limit (the shipped 2 GB would block publishers on a full test disk).

Fixtures:
    rabbitmq          (function) factory: ``rabbitmq(nodes=1)`` -> a started :class:`RabbitCluster`
                      (1 node, or N nodes joined with ``rabbitmqctl join_cluster``); every node
                      has an administrator account ``smartward``/``PASSWORD``; all are stopped
                      at teardown. ``rabbitmq(nodes=3, lan=Lan())`` puts each node in a
                      namespace of its own on a private LAN (tests/servers/netns.py), so that one
                      node can be cut from the others and from its clients.

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
from tests.servers.netns import Host, Lan

HOST = "127.0.0.1"
DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "rabbitmq"
SBIN = Path(os.environ.get("SMARTWARD_RABBITMQ_SBIN", "/usr/lib/rabbitmq/bin"))
USER = "smartward"
PASSWORD = "test-rabbit-pw"
# Settings the fixture replaces (listeners: ports of its own; log: a file; disk: small).
_REPLACED = ("listeners.tcp.", "mqtt.listeners.", "log.", "disk_free_limit.")


def render_config(template: str, *, mqtt_port: int, extra: Sequence[str] = (),
                  host: str = HOST) -> str:
    kept = [line for line in template.splitlines()
            if not line.strip().startswith(_REPLACED)]
    # The AMQP listener comes from RABBITMQ_NODE_IP_ADDRESS/PORT (a listener in the file as
    # well makes 3.10 bind the port twice).
    ours = [f"mqtt.listeners.tcp.default = {host}:{mqtt_port}", "log.console = false",
            "log.file = rabbit.log", "log.file.level = info", "disk_free_limit.absolute = 50MB",
            *extra]
    return "\n".join([*kept, "", "# --- tests/servers/rabbitmq.py ---", *ours, ""])


class RabbitNode:
    """One node. ``name`` is the short node name (``name@localhost``, or ``name@nodeI`` on a
    LAN host: the cluster's inetrc maps ``nodeI`` to the host's address)."""

    def __init__(self, workdir: Path, name: str, home: Path, config: str,
                 lan_host: Host | None = None, host_alias: str = "localhost") -> None:
        self.workdir = workdir
        self.name = name
        self.node = f"{name}@{host_alias}"
        self.home = home
        self.lan_host = lan_host
        self.host = lan_host.address if lan_host else HOST
        self.amqp_port = free_port()
        self.mqtt_port = free_port()
        self.dist_port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "rabbitmq.conf").write_text(
            render_config(config, mqtt_port=self.mqtt_port, host=self.host))
        (workdir / "enabled_plugins").write_text((DEPLOY / "enabled_plugins").read_text())
        self.log_path = workdir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        w = self.workdir
        ip = "{" + self.host.replace(".", ",") + "}"
        # On a LAN host: names resolved by the cluster's inetrc, and an empty rabbitmq-env.conf
        # instead of /etc/rabbitmq's (a machine's may pin epmd and the distribution to
        # 127.0.0.1 with ERL_EPMD_ADDRESS / ERL_FLAGS).
        lan = {"ERL_INETRC": str(self.home / "inetrc"), "ERL_EPMD_ADDRESS": "",
               "RABBITMQ_CONF_ENV_FILE": str(w / "rabbitmq-env.conf")} if self.lan_host else {}
        return {**os.environ, **lan, "HOME": str(self.home), "RABBITMQ_NODENAME": self.node,
                "RABBITMQ_NODE_IP_ADDRESS": self.host, "RABBITMQ_NODE_PORT": str(self.amqp_port),
                "RABBITMQ_DIST_PORT": str(self.dist_port),
                "RABBITMQ_CONFIG_FILE": str(w / "rabbitmq.conf"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(w / "enabled_plugins"),
                "RABBITMQ_MNESIA_BASE": str(w / "mnesia"), "RABBITMQ_LOG_BASE": str(w / "log"),
                "RABBITMQ_PID_FILE": str(w / "pid"), "ERL_CRASH_DUMP": str(w / "erl_crash.dump"),
                # Erlang distribution on loopback (or the LAN host's address) only.
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": f"-kernel inet_dist_use_interface {ip}"}

    def _argv(self, *argv: str) -> list[str]:
        return [*(self.lan_host.exec_prefix if self.lan_host else []), *argv]

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def mqtt_url(self, user: str = USER, password: str = PASSWORD) -> str:
        return f"mqtt://{user}:{password}@{self.host}:{self.mqtt_port}?protocol=3.1.1"

    def start(self, *, timeout_s: float = 90.0, wait: bool = True) -> None:
        """Start the node; with ``wait``, until its listeners are open."""
        if self.lan_host is not None:
            # The node's own epmd in its namespace, listening on its LAN address (Lan.close
            # kills it).
            (self.workdir / "rabbitmq-env.conf").write_text("")
            subprocess.run(self._argv("epmd", "-daemon"), env=self.env(), check=True, timeout=30)
            wait_until(lambda: port_open(self.host, 4369), timeout_s=10, what=f"epmd on {self.host}")
        self.proc = start_process(self._argv(str(SBIN / "rabbitmq-server")), self.log_path, env=self.env(),
                                  cwd=self.workdir)
        if not wait:
            return
        # The listeners open last in the boot sequence (after the plugins).
        wait_until(lambda: port_open(self.host, self.amqp_port) and port_open(self.host, self.mqtt_port),
                   timeout_s=timeout_s, what=f"RabbitMQ node {self.node}", alive=lambda: self.running,
                   log_path=self.workdir / "log" / "rabbit.log")

    def ctl(self, *args: str, timeout_s: float = 90.0, check: bool = True) -> str:
        """``rabbitmqctl -n NODE args...``; its output (ServerError on failure when ``check``)."""
        run = subprocess.run(self._argv(str(SBIN / "rabbitmqctl"), "-n", self.node, *args), env=self.env(),
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

    def __init__(self, workdir: Path, n: int, lan: Lan | None = None) -> None:
        tag = uuid.uuid4().hex[:6]
        home = workdir / "home"
        home.mkdir(parents=True, exist_ok=True)
        cookie = home / ".erlang.cookie"
        cookie.write_text(uuid.uuid4().hex.upper())
        cookie.chmod(0o400)
        config = (DEPLOY / "rabbitmq.conf").read_text()
        if lan is None:
            self.nodes = [RabbitNode(workdir / f"n{i}", f"sw{tag}n{i}", home, config) for i in range(n)]
            return
        hosts = [lan.add_host() for _ in range(n)]
        # Short node names whose host part every node (and rabbitmqctl) resolves through this
        # file, not /etc/hosts: no change outside the test's own directory.
        (home / "inetrc").write_text("".join(
            f"{{host, {{{h.address.replace('.', ',')}}}, [\"node{i}\"]}}.\n" for i, h in enumerate(hosts))
            + "{lookup, [file, native]}.\n")
        self.nodes = [RabbitNode(workdir / f"n{i}", f"sw{tag}n{i}", home, config, h, f"node{i}")
                      for i, h in enumerate(hosts)]

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
        nodes = ",".join(f"{n.host}:{n.amqp_port}" for n in self.nodes)
        return f"amqp://{user}:{password}@{nodes}/%2F?queue={queue}"

    def mqtt_url(self, user: str = USER, password: str = PASSWORD) -> str:
        """Every node, in order (the edge and the ingest fail over along the list)."""
        return ",".join(n.mqtt_url(user, password) for n in self.nodes)

    def queue_leader(self, queue: str, via: RabbitNode | None = None) -> RabbitNode:
        """The node that leads ``queue`` (quorum queues: the Raft leader), as ``via`` (default:
        the first running node) sees it."""
        out = (via or self.running_node()).ctl("list_queues", "name", "leader", "--no-table-headers", "-q")
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

    def make(nodes: int = 1, lan: Lan | None = None) -> RabbitCluster:
        cluster = RabbitCluster(tmp_path_factory.mktemp("rabbitmq"), nodes, lan)
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
