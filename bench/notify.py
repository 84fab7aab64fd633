"""``smartward bench alerts --notify``: the time from a reading to its email, under load.

The pipeline of ``smartward bench alerts`` (b) — the simulated fleet published at ``--rate``
readings per second to a private Mosquitto, the ingest in its own process, the store, the ops
service — with a notification policy (every gas leak of An Xá → one contact by email) and a
local SMTP server (aiosmtpd, a dev dependency) that notes when each message arrives. For every
email, its incident (``X-Smartward-Incident``) leads to the gas alarm injected into the load,
and so to the moment the batch that carried it was published: the latency is publish → email
received by the SMTP server (stored, committed with its outbox row, picked by the sender, sent).

An injected alarm opens a new incident only when the factory's previous one is resolved and
past its reopen window (1 h of reading time: a recurrence within it reopens the incident, and
a reopened incident is not announced twice): hence ``--inject-every-s`` of at least 3000.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.alerts import open_stores, pct, start_ingest
from bench.alerts_load import GAS_SENSORS, Load, TimedFeed, plan_load
from contract.registry import Registry

POLICY = """\
version: 1
rate_limit: {max_messages: 10000, window_min: 1}
contacts:
  - id: bench-truc-ban
    name: "Trực ban CCN An Xá (bench)"
    email: trucban@bench.example.vn
    sites: [an-xa]
policies:
  - id: bench-gas
    sites: [an-xa]
    min_severity: critical
    kinds: [gas_leak]
    channels: [email]
    notify: [bench-truc-ban]
"""


class _Inbox:
    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}  # incident id -> monotonic time of its email
        self.lock = threading.Lock()

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook name
        now = time.monotonic()
        import email

        msg = email.message_from_bytes(envelope.content)
        incident = str(msg.get("X-Smartward-Incident", ""))
        with self.lock:
            self.arrived.setdefault(incident, now)
        return "250 OK"


def run_notify_pipeline(args: argparse.Namespace, registry: Registry) -> int:
    try:
        from aiosmtpd.controller import Controller
    except ImportError:
        print("    --notify needs aiosmtpd (pip install 'smartward[dev]')")
        return 2
    from ops_center.rulebook.loader import load_patterns, load_rules
    from ops_center.service.service import OpsService
    from ops_center.service.settings import OpsServiceSettings
    from smartward.stack import MosquittoBroker, free_port

    start = (datetime.now(UTC) - timedelta(days=3)).replace(second=0, microsecond=0)
    plan = plan_load(registry, args.rate, args.seconds, inject_every_s=args.inject_every_s, start=start)
    n_readings = sum(p.readings for p in plan)
    print(
        f"    kế hoạch / plan: {n_readings:,} readings, {sum(len(p.injected) for p in plan)} gas alarms",
        flush=True,
    )
    last: dict[str, int] = {}
    for p in plan:
        last[p.gateway] = max(last.get(p.gateway, 0), p.seq)
    inbox = _Inbox()
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="smartward-bench-notify-")))
        smtp_port = free_port()
        controller = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
        controller.start()
        stack.callback(controller.stop)
        policy = workdir / "policy.yaml"
        policy.write_text(POLICY, "utf-8")
        broker = MosquittoBroker(workdir / "broker").start()
        stack.callback(broker.stop)
        db_url = args.db or f"sqlite:///{workdir / 'bench.db'}"
        repo = open_stores(db_url, stack)
        settings = OpsServiceSettings(
            mqtt_url=broker.url,
            db_url=db_url,
            ops_session_expiry_s=600,
            notify_policy=policy,
            smtp_url=f"smtp://127.0.0.1:{smtp_port}",
            public_url="https://ioc.example.vn",
            secret_key="b" * 40,
        )
        feed = TimedFeed()
        service = OpsService(
            settings,
            registry,
            repo,
            feed,
            rules=load_rules(registry=registry),
            patterns=load_patterns(),
            name=f"bench-notify-{os.getpid()}",
            client_id=f"smartward-bench-notify-{os.getpid()}",
        )
        service.start()
        stack.callback(service.stop)
        if not service.link.subscribed.wait(30):
            raise TimeoutError("the ops service did not subscribe")
        start_ingest(args.ingest, broker.url, db_url, registry, stack, workdir)
        load = Load(broker.url, registry)
        stack.callback(load.close)
        load.warm_up(plan[0])
        load.run(plan)
        published_s = load.last_s - load.first_s
        drain = max(60.0, args.seconds * 3)
        service.wait_until(lambda p: all(p.through.get(g, 0) >= s for g, s in last.items()), drain)
        deadline = time.monotonic() + 30  # the last emails: a bounded wait on the outbox
        notifier = service.notifier
        assert notifier is not None
        while time.monotonic() < deadline and notifier.sender.store.counts()["pending"]:
            time.sleep(0.1)
        # Each email back to the injected reading that opened its incident.
        latencies: list[float] = []
        after_alert: list[float] = []  # alert on the live feed → email: the notification's own share
        with inbox.lock:
            arrived = dict(inbox.arrived)
        for incident_id, at in arrived.items():
            detail = repo.incidents.get_incident(incident_id)
            if detail is None:
                continue
            keys = sorted(
                (a.opened_at.timestamp(), a.sensor) for a in detail.alerts if a.sensor in GAS_SENSORS
            )
            for ts, sensor in keys:
                sent = load.published_at.get((str(sensor), ts))
                if sent is not None:
                    latencies.append((at - sent) * 1000)
                    alerted = feed.seen.get((str(sensor), ts))
                    if alerted is not None:
                        after_alert.append((at - alerted) * 1000)
                    break
        stats = notifier.sender.stats
    print(
        f"    tải / load: {n_readings / published_s:,.0f} readings/s published; emails {len(arrived)} "
        f"(sender: {stats.sent} sent, {stats.retries} retries, {stats.failed} failed)"
    )
    if not latencies:
        print("    no email could be traced back to an injected reading")
        return 1
    ms = sorted(latencies)
    print(
        f"    công bố → email đến máy chủ thư / publish → email received (n={len(ms)}): "
        f"p50 {pct(ms, 50):.0f} ms, "
        f"p90 {pct(ms, 90):.0f} ms, p99 {pct(ms, 99):.0f} ms, max {max(ms):.0f} ms"
    )
    if after_alert:
        ms = sorted(after_alert)
        print(f"    cảnh báo lên luồng → email / alert on the feed → email received (n={len(ms)}): "
              f"p50 {pct(ms, 50):.0f} ms, p90 {pct(ms, 90):.0f} ms, p99 {pct(ms, 99):.0f} ms, "
              f"max {max(ms):.0f} ms")
    return 0
