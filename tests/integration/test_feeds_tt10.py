"""TT 10/2021 feed against real servers: a pyftpdlib receiver (FTP, and FTPS with a self-signed
certificate the test makes), the store in SQLite and TimescaleDB, the ops API for the report.

T1 (docs/reliability.md): the receiver is unreachable for hours (a clock the test controls); every
cycle's file is kept and re-sent oldest first once it is back; none lost (the receiver ends
with exactly the files ``export`` computes again from the store), none corrupted (the same
bytes), and the cluster manager sees cycles sent, pending and failed through the API, which
another ward's staff cannot (404).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from contract.registry import load_registry
from feeds.tt10.cycles import CYCLE, label_of, parse_lines, stamp, stations_of
from feeds.tt10.reader import open_readings
from feeds.tt10.runner import Tt10Feed, export
from feeds.tt10.spool import Spool
from feeds.tt10.uploader import FtpUploader
from feeds.tt10.uploads import UploadLog, open_upload_log
from tests.servers.ftp import FtpReceiver, self_signed
from tests.support.api import Env, Rows, auth, pg_env, pg_rows, sqlite_env, sqlite_rows

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

REG = load_registry()
STATIONS = stations_of(REG)
T0 = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)  # 08:00 Vietnam time; far from the API seed's "now"
COLS = ["time", "site", "gateway", "sensor", "metric", "value", "quality"]
FEED = "/api/v1/feeds/tt10"


class Clock:
    def __init__(self, t: datetime) -> None:
        self.t = t

    def __call__(self) -> datetime:
        return self.t


def readings(start: datetime, end: datetime) -> list[list[object]]:
    """A reading a minute for every metric of the outlet and the first stack; a calibration
    at 09:00-09:10 Vietnam time on the outlet, a device error on the stack's SO2 at 10:00."""
    out: list[list[object]] = []
    t = start
    k = 0
    while t < end:
        for sensor, gateway in (("ax-ww-01", "ax-gw-01"), ("ax-stack-01", "ax-gw-02")):
            for i, metric in enumerate(REG.sensors[sensor].spec.metrics):
                quality = "good"
                calibrating = T0 + timedelta(hours=1) <= t < T0 + timedelta(hours=1, minutes=10)
                if sensor == "ax-ww-01" and calibrating:
                    quality = "calibrating"
                if metric == "stack_so2" and t == T0 + timedelta(hours=2, minutes=3):
                    quality = "bad"
                out.append([t, "an-xa", gateway, sensor, metric, 10.0 + i + (k % 7) * 0.25, quality])
        t += timedelta(minutes=1)
        k += 1
    return out


def make_feed(db_url: str, receiver: FtpReceiver, spool_dir: Path, clock: Clock, ca: Path | None) -> Tt10Feed:
    return Tt10Feed(
        STATIONS, open_readings(db_url), Spool(spool_dir), FtpUploader.from_url(receiver.url, timeout_s=5,
                                                                                ca_file=ca),
        UploadLog(open_upload_log(db_url)), clock,
        delay=timedelta(seconds=60), retry=timedelta(seconds=60), backfill=timedelta(hours=24),
    )


def feed_at_t0(tmp_path: Path, db_url: str,
               tls: tuple[Path, Path] | None = None) -> tuple[FtpReceiver, Clock, Tt10Feed]:
    """A receiver (not started yet) in ``tmp_path``, a clock one minute past T0 and the feed
    on `db_url` that uploads to it (over FTPS when `tls` is a certificate)."""
    receiver = FtpReceiver(tmp_path / "receiver", tls=tls)
    clock = Clock(T0 + timedelta(seconds=61))
    return receiver, clock, make_feed(db_url, receiver, tmp_path / "tt10", clock, tls[0] if tls else None)


def report(env: Env, user: str) -> Any:
    r = env.client.get(FEED, params={"site": "an-xa", "limit": 200}, headers=auth(env.tokens[user]))
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[tuple[str, Env, Rows]]:
    path = tmp_path / "store.db"
    for env in sqlite_env(path):
        yield f"sqlite:///{path}", env, sqlite_rows(path)


@pytest.mark.parametrize("tls", [False, True], ids=["ftp", "ftps"])
def test_t1_receiver_outage_every_cycle_kept_and_resent_oldest_first(
    tmp_path: Path, sqlite_store: tuple[str, Env, Rows], tls: bool
) -> None:
    db_url, env, rows = sqlite_store
    rows.insert("readings", COLS, readings(T0 - timedelta(hours=2), T0 + timedelta(hours=4)))
    cert = self_signed(tmp_path) if tls else None
    receiver, clock, feed = feed_at_t0(tmp_path, db_url, cert)
    with receiver:
        first = feed.tick()  # on start: the cycles of the last 24 h that were never sent
        assert first.error is None
        assert len(first.sent) == 2 * 24  # two stations with readings, 2 h of cycles
        assert receiver.received == sorted(receiver.received, key=lambda n: (n[-18:], n))
    before = len(receiver.received)

    # The receiver is away for 3 h; the feed ticks every minute.
    for _ in range(3 * 60):
        clock.t += timedelta(minutes=1)
        tick = feed.tick()
        assert tick.sent == []
    waiting = feed.spool.pending()
    assert len(waiting) == 2 * 36
    during = report(env, "ax-manager")
    assert during["sent"] == 48 and during["pending"] + during["failed"] == 72 and during["failed"] >= 1
    assert during["last_error"] and "refused" in during["last_error"].lower()
    other_ward = env.client.get(FEED, params={"site": "an-xa"}, headers=auth(env.tokens["tn-staff"]))
    assert other_ward.status_code == 404
    assert report(env, "leader")["sent"] == 48

    # Back: every waiting cycle goes within the next tick (under one cycle), oldest first.
    with receiver:
        clock.t += timedelta(minutes=1)
        back = feed.tick()
        assert back.error is None and back.waiting == 0
        assert len(back.sent) == 72
        resent = receiver.received[before:]
        assert resent == sorted(resent, key=lambda n: (n[-18:], n))
        on_server = receiver.files()

    # None lost, none corrupted: the receiver has exactly what export computes from the store.
    expected = export(STATIONS, open_readings(db_url), clock.t - timedelta(hours=24),
                      feed.newest_due(clock.t), tmp_path / "export")
    assert sorted(on_server) == sorted(p.name for p in expected)
    for p in expected:
        assert on_server[p.name] == p.read_bytes(), p.name
    assert not [n for n in on_server if n.endswith(".tmp")]
    after = report(env, "ax-manager")
    assert (after["sent"], after["pending"], after["failed"]) == (120, 0, 0)
    assert {s["station"] for s in after["stations"]} == {"NBH_CCNANXA_NT01", "NBH_CCNANXA_KT01"}
    assert after["items"][0]["state"] == "sent" and after["items"][0]["attempts"] >= 1

    # The statuses and the label come from the store's readings (T - 5 min <= time < T).
    cal = on_server[f"NBH_CCNANXA_NT01_{stamp(T0 + timedelta(hours=1, minutes=5))}.txt"]
    lines = parse_lines(cal.decode("ascii"))
    assert {line[4] for line in lines} == {"01"}
    assert {line[3] for line in lines} == {T0 + timedelta(hours=1, minutes=5)}
    err = on_server[f"NBH_CCNANXA_KT01_{stamp(T0 + timedelta(hours=2, minutes=5))}.txt"]
    status = {line[0]: line[4] for line in parse_lines(err.decode("ascii"))}
    assert status["SO2"] == "02" and status["PM"] == "00"


def test_receiver_failing_mid_batch_keeps_the_order_and_loses_nothing(
    tmp_path: Path, sqlite_store: tuple[str, Env, Rows]
) -> None:
    db_url, env, rows = sqlite_store
    rows.insert("readings", COLS, readings(T0 - timedelta(hours=1), T0))
    receiver, clock, feed = feed_at_t0(tmp_path, db_url)
    with receiver:
        receiver.stor_budget = 5  # the receiver's disk fills after five files
        first = feed.tick()
        assert len(first.sent) == 5 and first.error and "451" in first.error
        assert len(feed.spool.pending()) == 2 * 12 - 5
        body = report(env, "ax-manager")
        assert (body["sent"], body["failed"], body["pending"]) == (5, 2 * 12 - 5, 0)
        receiver.stor_budget = None
        clock.t += timedelta(minutes=1)
        second = feed.tick()
        assert second.error is None and len(second.sent) == 2 * 12 - 5
    assert receiver.received == sorted(receiver.received, key=lambda n: (n[-18:], n))
    assert len(receiver.files()) == 2 * 12 and not [n for n in receiver.files() if n.endswith(".tmp")]


@pytest.fixture
def timescale_store(timescale_db: str) -> Iterator[tuple[str, Env, Rows]]:
    for env in pg_env(timescale_db):
        yield timescale_db, env, pg_rows(timescale_db)


def test_feed_reads_timescaledb_and_logs_uploads_there(
    tmp_path: Path, timescale_store: tuple[str, Env, Rows]
) -> None:
    db_url, env, rows = timescale_store
    rows.insert("readings", COLS, readings(T0 - timedelta(minutes=30), T0))
    receiver, _, feed = feed_at_t0(tmp_path, db_url)
    with receiver:
        tick = feed.tick()
    assert len(tick.sent) == 12 and tick.error is None
    body = report(env, "ax-manager")
    assert (body["sent"], body["pending"], body["failed"]) == (12, 0, 0)
    first = min(body["items"], key=lambda i: i["cycle"])
    assert datetime.fromisoformat(first["cycle"]) == label_of(T0 - timedelta(minutes=30))
    other_ward = env.client.get(FEED, params={"site": "an-xa"}, headers=auth(env.tokens["qt-staff"]))
    assert other_ward.status_code == 404


def _smartward(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "smartward.cli", *args], env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def test_cli_export_and_run_send_the_last_24h_on_start(
    tmp_path: Path, sqlite_store: tuple[str, Env, Rows]
) -> None:
    db_url, _, rows = sqlite_store
    now = datetime.now(UTC)
    start = label_of(now) - timedelta(hours=1)
    rows.insert("readings", COLS, readings(start, now))
    env = {**os.environ, "SMARTWARD_DB_URL": db_url, "PYTHONPATH": os.getcwd(), "SMARTWARD_TT10_DELAY_S": "0",
           "SMARTWARD_TT10_DIR": str(tmp_path / "spool")}
    done = _smartward(["feeds", "tt10", "export", "--start", start.isoformat(), "--end",
                       (start + 3 * CYCLE).isoformat(), "--out", str(tmp_path / "out")], env)
    assert done.returncode == 0, done.stderr
    assert len(list((tmp_path / "out").glob("*.txt"))) == 2 * 3
    bad = _smartward(["feeds", "tt10", "export", "--start", "yesterday", "--end", "now", "--out", "x"], env)
    assert bad.returncode == 2 and "invalid time" in bad.stderr

    receiver = FtpReceiver(tmp_path / "receiver")
    with receiver:
        proc = subprocess.Popen([sys.executable, "-m", "smartward.cli", "feeds", "tt10", "run"],
                                env={**env, "SMARTWARD_TT10_FTP_URL": receiver.url}, stderr=subprocess.PIPE,
                                text=True)
        try:
            deadline = time.monotonic() + 60
            while len(receiver.files()) < 2 * 11:  # the 11 cycles ended since `start`
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, f"only {len(receiver.files())} files"
                time.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0


def _until(predicate: Any, what: str, proc: subprocess.Popen[str], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "exited"
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        time.sleep(0.1)


def test_run_killed_with_files_waiting_sends_them_after_restart(
    tmp_path: Path, sqlite_store: tuple[str, Env, Rows]
) -> None:
    db_url, env, rows = sqlite_store
    now = datetime.now(UTC)
    start = label_of(now) - timedelta(hours=1)
    rows.insert("readings", COLS, readings(start, now))
    receiver = FtpReceiver(tmp_path / "receiver")  # not started: the receiver is away
    spool = tmp_path / "spool"
    run_env = {**os.environ, "SMARTWARD_DB_URL": db_url, "PYTHONPATH": os.getcwd(),
               "SMARTWARD_TT10_DELAY_S": "0", "SMARTWARD_TT10_DIR": str(spool),
               "SMARTWARD_TT10_FTP_URL": receiver.url, "SMARTWARD_TT10_FTP_TIMEOUT_S": "5"}
    cmd = [sys.executable, "-m", "smartward.cli", "feeds", "tt10", "run"]
    # (The API seed adds a reading or two of its own at its "now"; a new cycle may end meanwhile.)
    outbox = lambda: {p.name for p in spool.glob("outbox/*/*/*.txt")}  # noqa: E731
    proc = subprocess.Popen(cmd, env=run_env, stderr=subprocess.PIPE, text=True)
    try:
        _until(lambda: len(outbox()) >= 2 * 11, "the last hour's files in the outbox", proc)
        _until(lambda: report(env, "ax-manager")["failed"] >= 2 * 11, "failed in the log", proc)
    finally:
        proc.kill()  # kill -9 with every file waiting
        proc.wait(timeout=20)
    waiting = outbox()
    with receiver:
        proc = subprocess.Popen(cmd, env=run_env, stderr=subprocess.PIPE, text=True)
        try:
            _until(lambda: waiting <= set(receiver.files()), "every waiting file on the receiver", proc)
            _until(lambda: report(env, "ax-manager")["sent"] >= len(waiting), "sent in the log", proc)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0
    assert receiver.received == sorted(receiver.received, key=lambda n: (n[-18:], n))
    assert not outbox()
