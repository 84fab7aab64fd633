"""A private LAN of network namespaces for partition tests (docs/reliability.md, H1b).

Topology: a hub namespace holds a bridge; every host is a namespace of its own with one veth
(``eth0``) on that bridge and an address in a private /24; the test process reaches the hosts
through one veth of the root namespace on the same bridge (``.1``). Nothing else in the root
namespace changes, and no traffic leaves the machine.

A partition is iptables in the host's own namespace: every packet in or out of its ``eth0`` is
dropped (silently, as a pulled cable or a broken switch port: no RST, ARP still answers), so
its peers and its clients are cut while the host itself keeps running. The rules live in that
namespace only; :meth:`Lan.close` (a finaliser, run even when the test fails) kills the
processes left in the namespaces (each by its pid) and deletes the namespaces, which takes the
rules, the bridge and the veth pairs with them.

Needs root (CAP_NET_ADMIN), iproute2 and iptables (scripts/install-test-deps.sh): a failure
under CI, a skip elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from tests.servers._proc import ServerError, missing_server

IFACE = "eth0"  # the host's side of its veth, inside its namespace


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    run = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and run.returncode != 0:
        raise ServerError(f"ip {' '.join(args)}: rc={run.returncode} {run.stderr.strip()}")
    return run


def check_available() -> None:
    """Skip (or fail under CI) when namespaces and iptables cannot be used here."""
    if shutil.which("ip") is None or shutil.which("iptables") is None:
        missing_server("iproute2/iptables",
                       "no `ip` or `iptables` on PATH (apt-get install iproute2 iptables)")
    if os.geteuid() != 0:
        missing_server("network namespaces", "creating namespaces and veth pairs needs root")


def _free_subnet() -> str:
    """A 10.213.X.0/24 no route of the root namespace uses yet: ``10.213.X``."""
    routes = _ip("-4", "route", "show", "table", "all").stdout
    taken = [x for x in range(1, 255) if f"10.213.{x}." in routes]
    free = [x for x in range(1, 255) if x not in taken]
    if not free:
        raise ServerError("no free 10.213.X.0/24 for a test LAN")
    return f"10.213.{random.choice(free)}"


@dataclass
class Host:
    """One namespace on the LAN; ``exec_prefix`` runs a command inside it."""

    ns: str
    address: str

    @property
    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.ns]

    def iptables(self, *args: str) -> None:
        run = subprocess.run([*self.exec_prefix, "iptables", "-w", "5", *args], capture_output=True,
                             text=True, timeout=30, check=False)
        if run.returncode != 0:
            raise ServerError(f"iptables {' '.join(args)} in {self.ns}: {run.stderr.strip()}")

    def cut(self) -> None:
        """Drop every packet in and out of the host's LAN interface (its loopback stays)."""
        self.iptables("-A", "INPUT", "-i", IFACE, "-j", "DROP")
        self.iptables("-A", "OUTPUT", "-o", IFACE, "-j", "DROP")

    def heal(self) -> None:
        self.iptables("-F", "INPUT")
        self.iptables("-F", "OUTPUT")

    def rules(self) -> str:
        return subprocess.run([*self.exec_prefix, "iptables", "-S"], capture_output=True, text=True,
                              timeout=30, check=False).stdout


class Lan:
    """The hub, the root namespace's port on it, and the hosts added with :meth:`add_host`."""

    def __init__(self) -> None:
        check_available()
        self.tag = uuid.uuid4().hex[:6]
        self.prefix = _free_subnet()
        self.hub = f"sw{self.tag}hub"
        self.root_if = f"sw{self.tag}r"
        self.hosts: list[Host] = []
        self._namespaces: list[str] = []
        self._open()

    @property
    def root_address(self) -> str:
        return f"{self.prefix}.1"

    def _add_ns(self, name: str) -> None:
        _ip("netns", "add", name)
        self._namespaces.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def _open(self) -> None:
        try:
            self._add_ns(self.hub)
            _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.hub, "link", "set", "br0", "up")
            _ip("link", "add", self.root_if, "type", "veth", "peer", "name", "root", "netns", self.hub)
            _ip("-n", self.hub, "link", "set", "root", "master", "br0", "up")
            _ip("addr", "add", f"{self.root_address}/24", "dev", self.root_if)
            _ip("link", "set", self.root_if, "up")
        except BaseException:
            self.close()
            raise

    def add_host(self) -> Host:
        i = len(self.hosts)
        host = Host(f"sw{self.tag}h{i}", f"{self.prefix}.{10 + i}")
        port = f"h{i}"
        self._add_ns(host.ns)
        _ip("-n", self.hub, "link", "add", port, "type", "veth", "peer", "name", IFACE, "netns", host.ns)
        _ip("-n", self.hub, "link", "set", port, "master", "br0", "up")
        _ip("-n", host.ns, "addr", "add", f"{host.address}/24", "dev", IFACE)
        _ip("-n", host.ns, "link", "set", IFACE, "up")
        self.hosts.append(host)
        return host

    def pids(self, ns: str) -> Sequence[int]:
        out = _ip("netns", "pids", ns, check=False).stdout
        return [int(p) for p in out.split() if p.isdigit()]

    def close(self) -> None:
        """Kill what still runs in the hosts (an epmd, a node the test left), delete all."""
        for ns in reversed(self._namespaces):
            for pid in self.pids(ns):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            _ip("netns", "del", ns, check=False)
        self._namespaces.clear()
        _ip("link", "del", self.root_if, check=False)  # gone with the hub already, normally
