"""HAProxy in front of several ``ops serve`` processes (H3 in docs/reliability.md).

One HTTP frontend on a free loopback port; a backend with one server per ``ops serve``,
health-checked on ``/readyz`` every 300 ms (down after 2 failures, up after 2 successes).
``balance first``: every request goes to the first server that is up, so a test knows which
process its stream is on until that process dies; then the next one takes every request.
Long-lived responses (the live stream) get a tunnel time-out of an hour. The rendered file
is what deploy/haproxy/smartward.cfg shows for production, with test ports.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from tests.servers._proc import (
    free_port,
    log_tail_message,
    missing_server,
    run,
    start_process,
    stop_process,
    wait_for_port,
)


def render_config(port: int, backends: Sequence[tuple[str, int]]) -> str:
    servers = "\n".join(f"    server {name} 127.0.0.1:{p} check" for name, p in backends)
    return f"""\
global
    maxconn 512

defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout tunnel 1h
    option redispatch
    retries 2

frontend ops
    bind 127.0.0.1:{port}
    default_backend ops_serve

backend ops_serve
    balance first
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 300ms fall 2 rise 2
{servers}
"""


class HaproxyServer:
    def __init__(self, workdir: Path, backends: Sequence[tuple[str, int]]) -> None:
        sbin = Path("/usr/sbin/haproxy")  # Debian's, not on a user's PATH
        binary = shutil.which("haproxy") or (str(sbin) if sbin.exists() else None)
        if binary is None:
            missing_server("HAProxy", "no haproxy binary on PATH or in /usr/sbin")
        self.binary = binary
        self.port = free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "haproxy.cfg"
        self.config.write_text(render_config(self.port, backends), "utf-8")
        self.log = workdir / "haproxy.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HaproxyServer:
        run([self.binary, "-c", "-f", str(self.config)], what="haproxy -c", timeout_s=30)
        # -db: stay in the foreground (no daemon), so the fixture owns the process.
        self.proc = start_process([self.binary, "-db", "-f", str(self.config)], self.log)
        wait_for_port("127.0.0.1", self.port, proc=self.proc, timeout_s=15, log_path=self.log)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout_s=5)
            self.proc = None

    def describe(self) -> str:
        return f"haproxy on {self.url}{log_tail_message(self.log)}"


@pytest.fixture
def haproxy(tmp_path: Path) -> Iterator[Callable[[Sequence[tuple[str, int]]], HaproxyServer]]:
    """``haproxy([(name, port), ...])`` → a started :class:`HaproxyServer`, stopped at the end."""
    started: list[HaproxyServer] = []

    def make(backends: Sequence[tuple[str, int]]) -> HaproxyServer:
        server = HaproxyServer(tmp_path / f"haproxy{len(started)}", backends)
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.stop()
