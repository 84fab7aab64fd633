"""``smartward ingest run | status`` — the composition root of the ingest.

``run --workers N`` (N > 1) starts N worker processes on one MQTT 5 shared subscription
(``$share/{group}/smartward/v1/+/+/telemetry``) and restarts any that dies; each has its own
persistent session (client id ``...-{index}``), so what a dead worker had in flight is
redelivered to it when it comes back.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType

from contract.registry import load_registry
from ingest import housekeeping
from ingest.errors import IngestError, StoreUnavailable
from ingest.housekeeping import sync_registry
from ingest.ports import Store
from ingest.settings import IngestSettings
from mqttlink.ids import host_client_id

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
_RESTART_DELAY_MAX_S = 30.0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="smartward ingest",
                                description="Dịch vụ thu nhận dữ liệu / ingest service")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="chạy worker / run the ingest worker(s)")
    run.add_argument("--workers", type=int, default=1,
                     help="number of worker processes (shared subscription)")
    run.add_argument("--share-group", default=None,
                     help="MQTT 5 share group (default 'ingest' when --workers > 1)")
    run.add_argument("--metrics-port", type=int, default=None,
                     help="port for /metrics, /healthz, /readyz (worker i uses port + i)")
    run.add_argument("--client-id", default=None, help="MQTT client id (stable: the session is persistent)")
    run.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    run.add_argument("--no-migrate", action="store_true", help="do not run store migrations at start")
    st = sub.add_parser("status", help="trạng thái / readiness and counts from the store")
    st.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the broker")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(argv) if argv is not None else None)
    try:
        settings = IngestSettings()
    except ValueError as exc:
        print(f"Cấu hình sai / bad settings: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "status":
        return _status(settings, args.timeout)
    from ingest.sources import check_settings

    try:
        check_settings(settings)
    except IngestError as exc:
        print(f"Cấu hình sai / bad settings: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.workers < 1:
        print("--workers must be ≥ 1", file=sys.stderr)
        return EXIT_USAGE
    if args.share_group:
        settings.share_group = args.share_group
    if args.metrics_port is not None:
        settings.metrics_port = args.metrics_port
    if args.workers > 1:
        return _supervise(settings, args)
    return _run_one(settings, client_id=args.client_id, index=args.worker_index, migrate=not args.no_migrate)


def open_store(url: str) -> Store:
    from ingest.stores import open_store as _open

    try:
        store: Store = _open(url)
    except ValueError as exc:
        raise IngestError(str(exc)) from exc
    return store


def _run_one(settings: IngestSettings, *, client_id: str | None, index: int | None, migrate: bool) -> int:
    from ingest.metrics import HealthServer, IngestMetrics
    from ingest.mirror import InfluxMirror
    from ingest.worker import IngestWorker

    registry = load_registry(settings.registry)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        logger.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    store = open_store(settings.db_url)
    try:
        if migrate:
            _migrate_with_retry(store, stop)
            sync_registry(store, registry)
        metrics = IngestMetrics()
        cid = client_id or settings.client_id or host_client_id("ingest") + (
            f"-{index}" if index is not None else "")
        try:
            worker = IngestWorker(settings, store, registry, metrics=metrics, client_id=cid)
        except IngestError as exc:  # a broker or source URL that cannot work: say it, no traceback
            print(f"cấu hình sai / bad configuration: {exc}", file=sys.stderr)
            return EXIT_USAGE
        with contextlib.ExitStack() as stack:
            if settings.metrics_port is not None:
                port = settings.metrics_port + (index or 0) if settings.metrics_port else 0
                stack.enter_context(HealthServer(metrics, live=lambda: worker.live,
                                                 ready=lambda: worker.ready,
                                                 host=settings.metrics_host, port=port))
            stack.enter_context(worker)
            if (index or 0) == 0:
                upkeep_store = open_store(settings.db_url)  # its own connection and thread
                stack.callback(upkeep_store.close)
                stack.enter_context(housekeeping.running(upkeep_store,
                                                         retention=settings.retention_policy()))
            if settings.influx_url and (index or 0) == 0:
                source = open_store(settings.db_url)  # its own connection: the mirror has its own thread
                stack.callback(source.close)
                if all(callable(getattr(source, m, None))
                       for m in ("read_since", "mirror_checkpoint", "save_mirror_checkpoint")):
                    mirror = InfluxMirror.from_settings(settings, source, metrics=metrics)
                    stack.enter_context(mirror.running())
                else:
                    logger.error("the %s store cannot feed the InfluxDB mirror (no MirrorSource methods); "
                                 "mirror off", type(source).__name__)
            logger.info("ingest worker %s running", cid)
            while not stop.is_set():
                if worker.wait(timeout=0.5):
                    break
            # leaving the stack stops the worker: finish the transaction, ack, disconnect
        return EXIT_FAILED if worker.fatal is not None else EXIT_OK
    finally:
        store.close()


def _migrate_with_retry(store: Store, stop: threading.Event) -> None:
    delay = 0.5
    while True:
        try:
            store.migrate()
            return
        except StoreUnavailable as exc:
            logger.warning("store unavailable for migrations, retrying in %.1f s: %s", delay, exc)
            if stop.wait(delay):
                raise
            delay = min(delay * 2, 10.0)


def _supervise(settings: IngestSettings, args: argparse.Namespace) -> int:
    """N worker processes; a child that dies is restarted (with backoff); SIGTERM is forwarded."""
    group = settings.share_group or "ingest"
    if not args.no_migrate:
        store = open_store(settings.db_url)
        try:
            _migrate_with_retry(store, threading.Event())
            sync_registry(store, load_registry(settings.registry))
        finally:
            store.close()
    base_id = args.client_id or settings.client_id or host_client_id("ingest")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def spawn(i: int) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "ingest.cli", "run", "--worker-index", str(i), "--share-group", group,
               "--client-id", f"{base_id}-{i}", "--no-migrate"]
        if settings.metrics_port is not None:
            cmd += ["--metrics-port", str(settings.metrics_port)]
        return subprocess.Popen(cmd, env=os.environ.copy())

    children = {i: spawn(i) for i in range(args.workers)}
    delays = dict.fromkeys(children, 1.0)
    logger.info("started %d ingest workers on share group %r", len(children), group)
    while not stop.wait(0.5):
        for i, child in list(children.items()):
            rc = child.poll()
            if rc is None:
                continue
            logger.warning("worker %d exited with %d; restarting in %.0f s", i, rc, delays[i])
            if stop.wait(delays[i]):
                break
            delays[i] = min(delays[i] * 2, _RESTART_DELAY_MAX_S)
            children[i] = spawn(i)
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + settings.stop_grace_s + 30
    failed = False
    for child in children.values():
        try:
            failed |= child.wait(timeout=max(0.1, deadline - time.monotonic())) not in (0, -signal.SIGTERM)
        except subprocess.TimeoutExpired:
            child.kill()
            failed = True
    return EXIT_FAILED if failed else EXIT_OK


def _status_amqp(settings: IngestSettings, timeout_s: float) -> bool:
    """Each node of an AMQP source (SMARTWARD_INGEST_SOURCE), TCP only; True for ``mqtt``.
    One reachable node is enough to consume (any node may serve)."""
    if settings.ingest_source.strip().lower() == "mqtt":
        return True
    from ingest.amqp_source import parse_amqp_url

    try:
        url = parse_amqp_url(settings.ingest_source)
    except IngestError as exc:
        print(f"nguồn AMQP / AMQP source: {exc}")
        return False
    reachable = 0
    for host, port in url.hosts:
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                pass
            reachable += 1
            print(f"nút AMQP / AMQP node  {host}:{port} (queue {url.queue}): kết nối được / reachable")
        except OSError as exc:
            print(f"nút AMQP / AMQP node  {host}:{port}: KHÔNG kết nối được / UNREACHABLE ({exc})")
    return reachable > 0


def _status(settings: IngestSettings, timeout_s: float) -> int:
    """Read-only: never creates the database (a missing one is an error, exit 1)."""
    from ingest.worker import parse_broker_url
    from smartward.db_probe import missing_database, redact

    ok = True
    for url in settings.mqtt_urls:
        try:
            b = parse_broker_url(url)
            with socket.create_connection((b.host, b.port), timeout=timeout_s):
                pass
            print(f"máy chủ MQTT / broker  {b}: kết nối được / reachable")
        except (OSError, IngestError) as exc:
            ok = False
            print(f"máy chủ MQTT / broker  {redact(url)}: KHÔNG kết nối được / UNREACHABLE ({exc})")
    ok &= _status_amqp(settings, timeout_s)
    missing = missing_database(settings.db_url, timeout_s=timeout_s)
    if missing is not None:  # nothing opened, nothing created
        print(missing, file=sys.stderr)
        return EXIT_FAILED
    db = redact(settings.db_url)
    try:
        store = open_store(settings.db_url)
    except IngestError as exc:
        print(f"kho / store  {db}: không mở được / cannot open ({exc})")
        return EXIT_FAILED
    try:
        alive = store.ping()
        state = "sẵn sàng / ready" if alive else "KHÔNG trả lời / NOT ANSWERING"
        print(f"kho / store  {db}: {state}")
        ok &= alive
        if alive:
            _print_progress(store)
    except IngestError as exc:
        ok = False
        print(f"lỗi kho / store error: {exc} (chưa migrate? / not migrated? `smartward db migrate`)")
    finally:
        store.close()
    return EXIT_OK if ok else EXIT_FAILED


def _print_progress(store: Store) -> None:
    marks = store.watermarks()
    print(f"cổng đã xác nhận / gateways with an ack watermark: {len(marks)}")
    for gw, seq in sorted(marks.items()):
        print(f"  {gw:<24} seq ≤ {seq}")
    completeness = getattr(store, "completeness", None)
    rows = completeness() if callable(completeness) else []
    if not rows:
        return
    print(f"  {'cổng/gateway':<24} {'địa bàn/site':<16} {'dự kiến/expected':>16} {'đã lưu/stored':>14} "
          f"{'thư chết/dead':>13} {'mất/lost':>9} {'chờ/pending':>11} {'đủ/complete':>11}")
    for r in rows:
        pct = "—" if r.completeness_pct is None else f"{r.completeness_pct:.2f} %"
        print(f"  {r.gateway:<24} {r.site or '—':<16} {r.expected:>16} {r.stored:>14} "
              f"{r.dead_lettered:>13} {r.lost:>9} {r.pending:>11} {pct:>11}")


if __name__ == "__main__":
    logging.basicConfig(level=os.environ.get("SMARTWARD_LOG_LEVEL", "INFO").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(main())
