"""Fuzz at the MQTT boundary (issue 10): hypothesis-generated poison — status, telemetry and
command-result payloads with integers beyond 64 bits or negative, floats for integers, control
characters, lone surrogates, deep nesting, times outside every store's range, some retained —
published through a real Mosquitto (the shipped configuration) into `smartward ingest run` and
`smartward ops serve` PROCESSES, on SQLite and on TimescaleDB, with valid batches between them;
then both processes are restarted (the retained poison comes again).

Both must stay up (and ops answer /readyz), every valid batch is stored exactly once, every
poison message is a dead letter at the ingest (a retained one once, across the restart) and a
counted refusal at the ops service (``smartward_ops_messages_refused``) or at the API's command
link (``smartward_api_command_results_refused``). One generated example per store, no shrinking:
each example is two processes' lives (bounded: about 30 s per store)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from contract import topics
from contract.bounds import MAX_INT, time_problem
from contract.models import AGENT_MAX_CHARS, COMMAND_ID_MAX_CHARS, DETAIL_MAX_CHARS
from tests.servers._proc import start_process, stop_process, wait_for_port
from tests.servers.mosquitto import MosquittoFactory
from tests.support.ingest import Publisher, gateways
from tests.support.ports import free_port
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
SECRET = "poison-fuzz-secret-key-0123456789abcdef-xyz"
GWS = gateways(n=3)
HOSTILE = "\u0000__HOSTILE__"  # replaced by a raw JSON fragment after json.dumps
FAST = {"SMARTWARD_STORE_RETRY_INITIAL_MS": "50", "SMARTWARD_STORE_RETRY_MAX_MS": "500",
        "SMARTWARD_STORE_PING_INTERVAL_S": "0.3", "SMARTWARD_STOP_GRACE_S": "2",
        "SMARTWARD_GAP_CHECK_INTERVAL_MS": "100", "SMARTWARD_LOG_LEVEL": "INFO"}

# --- hostile values, as raw JSON fragments (every one outside the contract's bounds) ---------

_FORBIDDEN = [chr(c) for c in [*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0)]]

big_ints = st.one_of(st.integers(min_value=MAX_INT + 1, max_value=2**80),
                     st.integers(min_value=-(2**80), max_value=-1)).map(str)
floats_for_ints = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e300, max_value=1e300,
                            width=64).map(json.dumps)
non_finite = st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e999"])
wrong_types = st.sampled_from(["true", "null", '"7"', "{}", "[]", '{"a": 1}'])
deep = st.integers(min_value=200, max_value=200_000).map(lambda n: "[" * n + "]" * n)
control_text = st.tuples(st.text(max_size=20), st.sampled_from(_FORBIDDEN), st.text(max_size=20)).map(
    lambda t: json.dumps(t[0] + t[1] + t[2]))
lone_surrogate = st.tuples(st.text(max_size=10), st.integers(min_value=0xD800, max_value=0xDFFF)).map(
    lambda t: json.dumps(t[0])[:-1] + f"\\u{t[1]:04x}\"")


def _long_text(limit: int) -> st.SearchStrategy[str]:
    return st.integers(min_value=limit + 1, max_value=limit * 4).map(lambda n: json.dumps("x" * n))


def _bad_time(text: str) -> bool:
    try:
        return time_problem(datetime.fromisoformat(text)) is not None
    except ValueError:
        return True


_offsets = st.tuples(st.sampled_from("+-"), st.integers(0, 23), st.integers(0, 59)).map(
    lambda t: f"{t[0]}{t[1]:02d}:{t[2]:02d}")
extreme_times = st.tuples(
    st.sampled_from([1, 2, 1000, 1969, 1970, 9998, 9999]), st.integers(1, 12), st.integers(1, 28),
    st.integers(0, 23), st.integers(0, 59), _offsets,
).map(lambda t: f"{t[0]:04d}-{t[1]:02d}-{t[2]:02d}T{t[3]:02d}:{t[4]:02d}:00{t[5]}").filter(_bad_time).map(
    json.dumps)
bad_times = st.one_of(extreme_times, st.sampled_from(['"0001-01-01T00:00:00+00:01"',
                                                      '"9999-12-31T23:59:59-23:59"', '"not a time"',
                                                      '"2026-11-28T05:00:00"']),  # no offset
                      big_ints, control_text)
bad_ints = st.one_of(big_ints, floats_for_ints, non_finite, wrong_types, deep)


def bad_text(limit: int) -> st.SearchStrategy[str]:
    return st.one_of(control_text, lone_surrogate, _long_text(limit), big_ints, deep)


def _fill(doc: dict[str, Any], raw: str) -> bytes:
    return json.dumps(doc).replace(json.dumps(HOSTILE), raw, 1).encode("utf-8", "surrogatepass")


junk = st.one_of(st.binary(min_size=1, max_size=300).filter(lambda b: b.strip() != b""),
                 deep.map(str.encode), st.just(b"\xff\xfe\xfd"), st.just(b'{"v": 1'))


@st.composite
def poison_status(draw: st.DrawFn, gateway: str) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(junk)
    doc: dict[str, Any] = {"v": 1, "gateway": gateway, "state": "online", "ts": "2026-11-28T05:00:00Z",
                           "agent": "smartward-edge/0.1.0", "outbox_batches": 0, "last_seq": 3}
    where = draw(st.sampled_from(["ts", "outbox_oldest", "agent", "outbox_batches", "dropped_batches",
                                  "dropped_through", "last_seq", "counters", "counter_key"]))
    if where == "counters":
        doc["counters"] = {"readings": HOSTILE}
        return _fill(doc, draw(bad_ints))
    if where == "counter_key":
        doc["counters"] = {HOSTILE: 1}
        key = draw(st.one_of(control_text, lone_surrogate, _long_text(63)))
        return json.dumps(doc).replace(json.dumps(HOSTILE), key, 1).encode("utf-8", "surrogatepass")
    doc[where] = HOSTILE
    raw = {"ts": bad_times, "outbox_oldest": bad_times,
           "agent": bad_text(AGENT_MAX_CHARS)}.get(where, bad_ints)
    return _fill(doc, draw(raw))


@st.composite
def poison_telemetry(draw: st.DrawFn, gateway: str, sensor: str, metric: str, seq: int) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(junk)
    reading: dict[str, Any] = {"sensor": sensor, "metric": metric, "ts": "2026-11-28T04:59:58Z", "value": 1.5}
    doc: dict[str, Any] = {"v": 1, "gateway": gateway, "seq": seq, "sent_at": "2026-11-28T05:00:00Z",
                           "readings": [reading]}
    where = draw(st.sampled_from(["seq", "sent_at", "ts", "value", "sensor", "metric", "quality"]))
    if where in ("seq", "sent_at"):
        doc[where] = HOSTILE
        return _fill(doc, draw(bad_ints if where == "seq" else bad_times))
    reading[where] = HOSTILE
    raw = {"ts": bad_times, "value": st.one_of(non_finite, wrong_types, deep, control_text)}.get(
        where, bad_text(63))
    return _fill(doc, draw(raw))


@st.composite
def poison_result(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(junk)
    doc: dict[str, Any] = {"v": 1, "id": "c-1", "ok": True, "detail": "applied", "ts": "2026-11-28T05:00:02Z"}
    where = draw(st.sampled_from(["id", "ok", "detail", "ts"]))
    doc[where] = HOSTILE
    raw = {"id": bad_text(COMMAND_ID_MAX_CHARS), "detail": bad_text(DETAIL_MAX_CHARS), "ts": bad_times,
           "ok": st.one_of(big_ints, floats_for_ints, deep)}[where]
    return _fill(doc, draw(raw))


# --- the platform as processes ------------------------------------------------------------------


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return int(r.status), r.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), ""
    except OSError:
        return 0, ""


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@dataclass
class Platform:
    tmp: Path
    env: dict[str, str]
    db_url: str
    api_port: int = field(default_factory=free_port)
    ingest_port: int = field(default_factory=free_port)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    starts: int = 0

    def start(self) -> None:
        self.starts += 1
        self.procs["ingest"] = start_process(
            [sys.executable, "-m", "smartward.cli", "ingest", "run", "--client-id", "fuzz-ingest",
             "--metrics-port", str(self.ingest_port)], self.tmp / f"ingest-{self.starts}.log",
            env=self.env, cwd=ROOT)
        self.procs["ops"] = start_process(
            [sys.executable, "-m", "smartward.cli", "ops", "serve", "--port", str(self.api_port)],
            self.tmp / f"ops-{self.starts}.log", env=self.env, cwd=ROOT)
        wait_for_port("127.0.0.1", self.api_port, proc=self.procs["ops"], timeout_s=60,
                      log_path=self.tmp / f"ops-{self.starts}.log")
        wait_until(self.ready, 60, "ingest and ops ready")

    def ready(self) -> bool:
        return (_get(f"http://127.0.0.1:{self.ingest_port}/readyz")[0] == 200
                and _get(f"http://127.0.0.1:{self.api_port}/readyz")[0] == 200)

    def alive(self) -> None:
        for name, p in self.procs.items():
            log = (self.tmp / f"{name}-{self.starts}.log").read_text(errors="replace")[-3000:]
            assert p.poll() is None, f"{name} exited with {p.returncode}:\n{log}"

    def stop(self) -> None:
        for name, p in self.procs.items():
            rc = stop_process(p, timeout_s=30)
            assert rc == 0, f"{name} stopped with {rc}"
        self.procs.clear()

    def ops_metrics(self) -> str:
        return _get(f"http://127.0.0.1:{self.api_port}/metrics")[1]

    def sql(self, query: str) -> list[tuple[Any, ...]]:
        if self.db_url.startswith("sqlite"):
            with sqlite3.connect(self.db_url.split("sqlite:///", 1)[1]) as c:
                return [tuple(r) for r in c.execute(query).fetchall()]
        import psycopg
        with psycopg.connect(self.db_url) as pg:
            return [tuple(r) for r in pg.execute(query.encode()).fetchall()]


@pytest.fixture(params=["sqlite", "timescale"])
def platform(request: pytest.FixtureRequest, mosquitto: MosquittoFactory,
             tmp_path: Path) -> Iterator[Platform]:
    if request.param == "sqlite":
        db_url = f"sqlite:///{tmp_path / 'smartward.db'}"
    else:
        db_url = str(request.getfixturevalue("timescale_db"))
    broker = mosquitto()
    env = {**os.environ, **FAST, "SMARTWARD_DB_URL": db_url, "SMARTWARD_SECRET_KEY": SECRET,
           "SMARTWARD_MQTT_URL": broker.url, "SMARTWARD_COMMANDS_MQTT_URL": broker.url,
           "PYTHONPATH": str(ROOT)}
    migrate = subprocess.run([sys.executable, "-m", "smartward.cli", "db", "migrate"], env=env, cwd=ROOT,
                             capture_output=True, timeout=120, check=False)
    assert migrate.returncode == 0, migrate.stderr.decode()[-2000:]
    p = Platform(tmp_path, env, db_url)
    p.env["FUZZ_BROKER_URL"] = broker.url
    try:
        yield p
    finally:
        for proc in p.procs.values():
            stop_process(proc)


@settings(max_examples=1, deadline=None, phases=[Phase.explicit, Phase.generate], database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(data=st.data())
def test_poison_at_the_mqtt_boundary_stops_nothing(platform: Platform, data: st.DataObject) -> None:
    (site, gw, pairs), *_ = GWS
    sensor, metric_code = pairs[0]
    statuses: dict[tuple[str, bytes], bool] = {}  # (topic, payload) -> retained
    for _ in range(data.draw(st.integers(15, 25), label="n_status")):
        s_site, s_gw, _p = data.draw(st.sampled_from(GWS))
        payload = data.draw(poison_status(s_gw))
        statuses.setdefault((topics.status(s_site, s_gw), payload), data.draw(st.booleans()))
    telemetry: list[bytes] = []
    for i in range(data.draw(st.integers(15, 25), label="n_telemetry")):
        payload = data.draw(poison_telemetry(gw, sensor, metric_code, 1_000_000 + i))
        if payload not in telemetry:
            telemetry.append(payload)
    results = list(dict.fromkeys(data.draw(st.lists(poison_result(), min_size=5, max_size=12),
                                           label="results")))

    platform.start()
    url = platform.env["FUZZ_BROKER_URL"]
    pub = Publisher(url, client_id="fuzz-gateway", readings_per_batch=3)
    valid = [(g_site, g_gw, g_pairs) for g_site, g_gw, g_pairs in GWS[:2]]
    try:
        # The subscriptions are made at the first connect: a first batch, sent until stored.
        def stored(gateway: str) -> set[int]:
            return {int(s) for (s,) in platform.sql(
                f"SELECT seq FROM ingest_batches WHERE gateway = '{gateway}' AND outcome = 'stored'")}

        first = pub.batch(site, gw, pairs, 1)

        def probe() -> bool:
            pub.publish(site, gw, first).wait_for_publish(10)
            return 1 in stored(gw) and metric(platform.ops_metrics(), "smartward_ops_messages") >= 1
        wait_until(probe, 30, "the first batch stored and seen by the ops service")

        probes = 0

        def result_probe() -> bool:
            nonlocal probes
            probes += 1
            pub.client.publish(topics.build(site, gw, "cmd/result"), b"\x00probe", qos=1).wait_for_publish(10)
            return metric(platform.ops_metrics(), "smartward_api_command_results_refused") >= 1
        wait_until(result_probe, 30, "the command link subscribed")

        # Poison, with valid batches between: seqs 2..N of two gateways.
        seq = {g: 2 if g == gw else 1 for _s, g, _p in valid}
        items: list[tuple[str, bytes, bool]] = [(t, p, r) for (t, p), r in statuses.items()]
        items += [(topics.telemetry(site, gw), p, False) for p in telemetry]
        items += [(topics.build(site, gw, "cmd/result"), p, False) for p in results]
        order = data.draw(st.permutations(items), label="order")
        for k, (topic, payload, retain) in enumerate(order):
            pub.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)
            if k % 4 == 0:
                v_site, v_gw, v_pairs = valid[k % 2]
                pub.publish(v_site, v_gw, pub.batch(v_site, v_gw, v_pairs, seq[v_gw])).wait_for_publish(10)
                seq[v_gw] += 1
        sent = {g: n - 1 for g, n in seq.items()}
        n_letters = len(statuses) + len(telemetry)

        def letters() -> int:
            return int(platform.sql("SELECT count(*) FROM dead_letters")[0][0])

        wait_until(lambda: all(stored(g) == set(range(1, n + 1)) for g, n in sent.items())
                   and letters() >= n_letters, 40, f"valid batches {sent} stored, {n_letters} dead letters")
        wait_until(lambda: metric(platform.ops_metrics(), "smartward_ops_messages_refused")
                   >= len(statuses) + len(telemetry), 20, "the ops service's refusals")
        wait_until(lambda: metric(platform.ops_metrics(), "smartward_api_command_results_refused")
                   >= len(results) + 1, 20, "the command link's refusals")
        platform.alive()
        ops_text = platform.ops_metrics()
        assert metric(ops_text, "smartward_ops_messages_refused") == len(statuses) + len(telemetry), ops_text
        assert metric(ops_text, "smartward_ops_messages_failed") == 0
        assert letters() == n_letters
        refused = metric(ops_text, "smartward_api_command_results_refused")
        assert len(results) + 1 <= refused <= len(results) + probes

        # A restart of both: the retained poison comes again, the rest was acknowledged.
        platform.stop()
        platform.start()
        for v_site, v_gw, v_pairs in valid:
            pub.send(v_site, v_gw, v_pairs, [sent[v_gw] + 1, sent[v_gw] + 2])
            sent[v_gw] += 2
        wait_until(lambda: all(stored(g) == set(range(1, n + 1)) for g, n in sent.items()), 30,
                   "valid batches after the restart")
        platform.alive()
        assert _get(f"http://127.0.0.1:{platform.api_port}/readyz")[0] == 200
        assert letters() == n_letters  # a retained poison status is one dead letter, not one per start
        for g, n in sent.items():
            rows = platform.sql(f"SELECT seq FROM ingest_batches WHERE gateway = '{g}' AND seq < 1000000")
            assert sorted(int(s) for (s,) in rows) == list(range(1, n + 1))  # each once
        readings = platform.sql("SELECT count(*) FROM readings")[0][0]
        assert int(readings) == sum(sent.values()) * pub.per_batch
        platform.stop()
    finally:
        pub.close()
