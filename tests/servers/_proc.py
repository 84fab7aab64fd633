"""Process plumbing shared by the server fixtures: start/stop/kill -9, short commands, private servers.

Every wait here has a deadline and fails with the server's log, so a server that does not
come up is one clear failure, not a hung run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import NoReturn, Protocol, TypeVar

import pytest

# The one free_port and the one wait_until live in tests/support/; re-exported here for the
# fixtures and for tests that import them from this module.
from tests.support.ports import free_port, port_open
from tests.support.waiting import WaitTimeout, log_tail, log_tail_message, wait_until

__all__ = [
    "INSTALL_HINT", "ServerError", "WaitTimeout", "free_port", "in_ci", "kill9", "log_tail",
    "log_tail_message", "missing_server", "port_open", "private_servers", "run", "start_process",
    "stop_process", "wait_for_port", "wait_until",
]
INSTALL_HINT = "scripts/install-test-deps.sh"


def in_ci() -> bool:
    """True on CI, where a missing server fails the run (docs/style.md rule 14)."""
    return os.environ.get("CI", "").strip().lower() == "true"


def missing_server(what: str, detail: str) -> NoReturn:
    """Stop the test because `what` cannot be run here: a failure on CI, a skip elsewhere."""
    message = f"{what} is not available: {detail}. Install the test servers with: {INSTALL_HINT}"
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


class ServerError(RuntimeError):
    """A test server failed to start, stop or answer; the message carries its log tail."""


def wait_for_port(
    host: str,
    port: int,
    *,
    timeout_s: float = 30.0,
    proc: subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
) -> None:
    """Wait until something accepts TCP connections on host:port."""
    wait_until(
        lambda: port_open(host, port),
        timeout_s=timeout_s,
        what=f"{host}:{port}",
        alive=(lambda: proc.poll() is None) if proc is not None else None,
        log_path=log_path,
        max_step_s=0.2,  # servers start in tens of milliseconds to seconds: no need to ask more often
    )


def start_process(
    argv: Sequence[str],
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start a server in the background, stdout and stderr appended to `log_path`.

    It gets its own process group so that stop/kill reach its children too, and so that a
    Ctrl-C aimed at pytest does not kill it before the fixture's teardown runs.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )


def stop_process(proc: subprocess.Popen[bytes], *, timeout_s: float = 15.0) -> int:
    """SIGTERM the process group, then SIGKILL it if it is still there at the deadline."""
    if proc.poll() is not None:
        return proc.returncode
    _signal_group(proc, signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        kill9(proc)
        return proc.returncode


def kill9(proc: subprocess.Popen[bytes]) -> None:
    """kill -9 the process group (a crash: no shutdown code runs) and reap it."""
    if proc.poll() is None:
        _signal_group(proc, signal.SIGKILL)
    proc.wait()


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # it exited on its own meanwhile
        os.killpg(proc.pid, sig)


def run(
    argv: Sequence[str],
    *,
    what: str,
    timeout_s: float = 120.0,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    log_path: Path | None = None,
) -> str:
    """Run a short command (initdb, pg_ctl...) to completion; its output, or ServerError."""
    try:
        done = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ServerError(f"{what}: no result after {timeout_s:.0f} s{log_tail_message(log_path)}") from exc
    output = (done.stdout + done.stderr).decode(errors="replace")
    if done.returncode != 0:
        raise ServerError(
            f"{what}: exit {done.returncode}: {' '.join(argv)}\n{output.strip()}{log_tail_message(log_path)}"
        )
    return output


class _Closable(Protocol):
    def close(self) -> None: ...


_S = TypeVar("_S", bound=_Closable)


def private_servers(tmp_path_factory: pytest.TempPathFactory, kind: str,
                    start: Callable[[str, Path], _S]) -> Iterator[Callable[[], _S]]:
    """Body of a ``make_<kind>`` fixture: a factory of private servers (for crash tests),
    each started by ``start(name, log_dir)`` and closed when the test ends."""
    servers: list[_S] = []
    logs = tmp_path_factory.mktemp(f"{kind}-private-logs")

    def make() -> _S:
        server = start(f"{kind}-private{len(servers)}", logs)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()
