"""The edge agent as a real process (`python -m edge.cli run ...`), killed with SIGKILL.

The test follows the agent through its DEBUG log on stderr ("sealed batch seq=N"), read by
a thread and waited on with a condition: no polling of files, no sleeps.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contract.codec import decode_telemetry
from contract.registry import load_registry
from edge.drivers.synthetic import SyntheticDriver
from edge.outbox import SqliteOutbox
from tests.servers.mosquitto import IngestFactory, MosquittoFactory

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

ROOT = Path(__file__).resolve().parents[2]
GW = "ax-gw-02"
T0 = datetime(2026, 11, 28, 0, 0, tzinfo=UTC)
SEALED = re.compile(r"sealed batch seq=(\d+)")


class AgentProcess:
    def __init__(self, argv: list[str], env: Mapping[str, str]) -> None:
        self.proc = subprocess.Popen(argv, env=dict(env), cwd=ROOT, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)
        self.lines: list[str] = []
        self.sealed = 0
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._cond:
                self.lines.append(line.rstrip())
                if m := SEALED.search(line):
                    self.sealed = max(self.sealed, int(m[1]))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
        with self._cond:
            ok = self._cond.wait_for(lambda: predicate() or self.proc.poll() is not None, timeout=timeout_s)
            if not ok or not predicate():
                tail = "\n".join(self.lines[-30:])
                raise AssertionError(f"edge agent: {what}: not after {timeout_s} s "
                                     f"(exit {self.proc.poll()})\n{tail}")

    def kill9(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._reader.join(timeout=10)

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=20)
        self._reader.join(timeout=10)
        return code


def agent_env(broker_url: str, outbox: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SMARTWARD_LOG_LEVEL": "DEBUG",
        "SMARTWARD_MQTT_URL": broker_url,
        "SMARTWARD_EDGE_OUTBOX": str(outbox),
        "SMARTWARD_EDGE_FLUSH_INTERVAL_MS": "5000",
        "SMARTWARD_EDGE_POLL_INTERVAL_MS": "5000",
        "SMARTWARD_EDGE_ACK_TIMEOUT_S": "1",
        "SMARTWARD_EDGE_ACK_TIMEOUT_MAX_S": "2",
        "SMARTWARD_EDGE_STATUS_INTERVAL_S": "1",
        "SMARTWARD_EDGE_RECONNECT_MIN_S": "0.05",
        "SMARTWARD_EDGE_RECONNECT_MAX_S": "0.5",
        "SMARTWARD_EDGE_CONNECT_TIMEOUT_S": "2",
        "SMARTWARD_EDGE_KEEPALIVE_S": "5",
    }


def run_agent(env: Mapping[str, str], start: datetime) -> AgentProcess:
    argv = [sys.executable, "-m", "edge.cli", "run", "--gateway", GW, "--driver", "synthetic",
            "--speed", "300", "--start", start.isoformat()]
    return AgentProcess(argv, env)


def test_edge_agent_killed_while_the_broker_is_down_loses_nothing(
    tmp_path: Path, mosquitto: MosquittoFactory, recording_ingest: IngestFactory
) -> None:
    broker = mosquitto()
    ingest = recording_ingest(broker.url)
    outbox_dir = tmp_path / "outbox"
    env = agent_env(broker.url, outbox_dir)

    first = run_agent(env, T0)
    try:
        ingest.wait_for(lambda: ingest.watermark(GW) >= 10, 30, "10 batches stored")
        broker.kill9()
        delivered = max(ingest.seqs(GW))
        first.wait_for(lambda: first.sealed >= delivered + 10, 20, "10 batches sealed with the broker down")
    finally:
        first.kill9()

    with SqliteOutbox(outbox_dir, max_bytes=10**9) as outbox:
        k1 = outbox.last_seq
        stored = {b.seq: b.payload for b in outbox.after(0, through=k1, limit=10**6)}
    assert k1 >= first.sealed  # every batch it logged as sealed was committed
    assert set(range(delivered + 1, k1 + 1)) <= set(stored)  # the undelivered ones are all on disk
    # The driver starts again after the newest stored reading (what was read but not yet
    # sealed died with the process, and is read again).
    resume = max(r.ts for r in decode_telemetry(stored[k1]).readings)

    broker.start()
    second = run_agent(env, resume)
    try:
        second.wait_for(lambda: second.sealed >= k1 + 10, 30, "10 new batches")
        ingest.wait_for(lambda: ingest.watermark(GW) >= k1 + 10, 30, "the backlog and 10 new batches stored")
    finally:
        code = second.terminate()
    assert code == 0  # SIGTERM is a clean stop

    with SqliteOutbox(outbox_dir, max_bytes=10**9) as outbox:
        k2 = outbox.last_seq
    ingest.wait_for(lambda: ingest.watermark(GW) == k2, 20, "everything stored after the clean stop")
    assert ingest.seqs(GW) == set(range(1, k2 + 1))
    copies = ingest.copies(GW)
    for seq, payload in stored.items():
        assert copies[seq] == {payload}, f"seq {seq} changed across the restart"
    batches = ingest.batches(GW)
    # The new process's first batch took the next seq.
    assert min(r.ts for r in batches[k1 + 1].readings) > resume
    readings = [r for seq in range(1, k2 + 1) for r in batches[seq].readings]
    expected = SyntheticDriver(load_registry().sensors_of(GW), start=T0).poll(readings[-1].ts)
    assert readings == expected  # nothing lost, nothing twice
    # The agent says offline with its final seq; if the broker did not acknowledge that status
    # within edge_shutdown_timeout_s (a loaded machine), the agent leaves with its Will instead
    # (edge/mqtt_publisher.py close()), whose status carries the seq of connect time.
    stopped = [line for line in second.lines if "edge agent" in line and " stopped:" in line]
    assert stopped, "\n".join(second.lines[-30:])
    acknowledged = stopped[-1].endswith("offline status acknowledged")
    try:
        ingest.wait_for(lambda: (s := ingest.last_status(GW)) is not None and s.state == "offline"
                        and (s.last_seq == k2 or not acknowledged), 10,
                        "the offline status of the stopped agent")
    except AssertionError as exc:
        links = [line for line in second.lines if "connect" in line or "link" in line or "status" in line]
        raise AssertionError(f"{exc}; last status {ingest.last_status(GW)}; agent: {stopped[-1]}; "
                             "the agent's connections:\n" + "\n".join(links[-20:])) from exc
