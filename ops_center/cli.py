"""``smartward ops serve``: the operations center in one process, the composition root.

    smartward ops serve [--host 127.0.0.1] [--port 8000] [--no-migrate]

It runs the ops service (its own MQTT subscription → rules → alerts → incidents → the store and
the change feed) and the API (FastAPI under uvicorn: REST, the live stream from the feed, the
operations screen), with readiness = broker connected, store answering, rule state restored.
People's incident actions reach the incident manager through the service. SIGTERM (or
Ctrl-C) stops the service at once (final snapshot, acknowledgements; in HA the evaluator lock
goes to a standby), then the API (open live streams get a 5 s grace), then the stores.

With ``SMARTWARD_OPS_HA`` (PostgreSQL) the service runs only while this process holds the
evaluator lock (ops_center/service/standby.py) and the live stream is fed from the store's
change feed (ops_center/service/change_feed.py); docs/scale-out.md.

Settings: ``OpsSettings`` (API: ``SMARTWARD_DB_URL``, ``SMARTWARD_SECRET_KEY``...) and
``OpsServiceSettings`` (``SMARTWARD_MQTT_URL``, ``SMARTWARD_OPS_*``), from the environment or
the dotenv file named by ``SMARTWARD_CONFIG``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from types import FrameType
from typing import TYPE_CHECKING

from pydantic import SecretStr, ValidationError

from contract.errors import RegistryError
from contract.registry import Registry, load_registry
from ops_center.adapters.factory import open_repository
from ops_center.adapters.repository import OpsRepository, RepositoryUnavailable
from ops_center.domain.errors import RuleError
from ops_center.feed import Feed
from ops_center.notify.loader import PolicyError, load_policy
from ops_center.settings import OpsSettings, SecretKeyError

if TYPE_CHECKING:  # numpy, paho (the ops extra) come with these: imported when a command runs
    from ops_center.service.standby import EvaluatorGate

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
_GRACE_S = 5  # open HTTP responses (live streams) get this long at a stop, then are closed


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="smartward ops", description="Trung tâm điều hành / operations center")
    sub = p.add_subparsers(dest="command", required=True, metavar="<lệnh/command>")
    serve = sub.add_parser("serve", help="chạy dịch vụ quy tắc và API / run the rule service and the API")
    serve.add_argument("--host", default="127.0.0.1",
                       help="địa chỉ nghe / listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="cổng / port (default 8000)")
    serve.add_argument("--no-migrate", action="store_true",
                       help="không tạo/nâng cấp bảng / do not run the ops migrations at start")
    return p


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    from ops_center.adapters.leadership import AdvisoryLeadership
    from ops_center.rulebook.loader import load_patterns, load_rules
    from ops_center.security.broker_watch import BrokerLogWatcher
    from ops_center.service.change_feed import ChangeFeedListener, StoreFedFeed
    from ops_center.service.service import OpsService
    from ops_center.service.settings import OpsServiceSettings
    from ops_center.service.standby import EvaluatorGate

    env_file = os.environ.get("SMARTWARD_CONFIG")
    try:
        settings = OpsSettings(_env_file=env_file)
        service_settings = OpsServiceSettings(_env_file=env_file)
    except SecretKeyError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except ValidationError as exc:
        print(f"Cấu hình sai / invalid settings:\n{exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        registry = load_registry(settings.registry)
        rules = load_rules(service_settings.rule_overlays, registry=registry)
        patterns = load_patterns(service_settings.ops_patterns)
        load_policy(service_settings.notify_policy, registry=registry)  # refused at start, with its line
    except (RegistryError, RuleError, PolicyError) as exc:
        print(f"Cấu hình sai / invalid configuration: {exc}", file=sys.stderr)
        return EXIT_USAGE

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()

    # uvicorn handles SIGTERM/SIGINT while it serves and re-raises them once it has shut down:
    # these handlers then make that a clean stop of everything else.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    with contextlib.ExitStack() as stack:
        try:
            repo = open_repository(settings.db_url, pool_min=settings.db_pool_min,
                                   pool_max=settings.db_pool_max)
        except (ValueError, RepositoryUnavailable) as exc:
            print(f"Không mở được CSDL / cannot open the store: {exc}", file=sys.stderr)
            return EXIT_FAILED
        stack.callback(repo.close)
        if not args.no_migrate and not _migrate(repo, stop):
            return EXIT_FAILED
        # The service writes through its own connection(s): API reads never queue behind it.
        service_repo = open_repository(settings.db_url, pool_min=1, pool_max=2)
        stack.callback(service_repo.close)
        # HA (docs/scale-out.md): several processes on one PostgreSQL store, one evaluator.
        ha = settings.ops_ha and not settings.db_url.startswith("sqlite")
        feed = (StoreFedFeed if ha else Feed)(ring_size=settings.stream_ring_size,
                                              queue_max=settings.stream_queue_max)
        if isinstance(feed, StoreFedFeed):
            listener = ChangeFeedListener(settings.db_url, repo.incidents, repo.gateways, feed)
            listener.start()
            stack.callback(listener.stop)
        # The acknowledge links in messages are signed with the API's key (random per process
        # in demo/local without one).
        service_settings.secret_key = SecretStr(settings.signing_key())
        # In HA every process uses one MQTT client id: the broker's session (what the last
        # leader took but did not acknowledge) passes to whichever process leads next.
        service = OpsService(service_settings, registry, service_repo, feed, rules=rules,
                             patterns=patterns,
                             client_id=service_settings.ops_client_id or ("smartward-ops" if ha else None))
        gate = EvaluatorGate(service, AdvisoryLeadership(settings.db_url) if ha else None)
        if isinstance(feed, StoreFedFeed):
            listener.on_incident = gate.adopt
        gate.start()
        stack.callback(gate.stop)
        if settings.broker_log is not None:
            watcher = BrokerLogWatcher(settings.broker_log, registry, service_repo.security, feed)
            watcher.start()
            stack.callback(watcher.stop)
        if stop.is_set():
            return EXIT_OK

        def readiness() -> Mapping[str, bool]:
            return {"store": repo.ping(), "broker": gate.broker_ok, "rules": gate.ready}

        return _serve(args.host, args.port, settings, repo, feed, registry, gate, readiness, stop)
    return EXIT_OK


def _serve(host: str, port: int, settings: OpsSettings, repo: OpsRepository, feed: Feed, registry: Registry,
           gate: EvaluatorGate, readiness: Callable[[], Mapping[str, bool]], stop: threading.Event) -> int:
    import uvicorn
    from prometheus_client import Gauge

    from ops_center.api.app import create_app

    app = create_app(settings, repo, feed, readiness, registry=registry, on_action=gate.on_action)
    gate.service.register_metrics(app.state.smartward.metrics.registry)
    Gauge("smartward_ops_leader", "1 while this process is the evaluator (docs/scale-out.md), else 0",
          registry=app.state.smartward.metrics.registry).set_function(lambda: 1 if gate.leader else 0)
    # A live-stream response never ends by itself: without a grace limit a SIGTERM waits for
    # every browser to leave, and the supervisor's SIGKILL then skips the final snapshot.
    class _Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            # Hand the evaluator over at the signal, not after the open streams' grace: the
            # service saves its final snapshot and the lock goes to a standby meanwhile.
            threading.Thread(target=gate.stop, name="ops-handover", daemon=True).start()
            super().handle_exit(sig, frame)

    server = _Server(uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False,
                                    proxy_headers=False, lifespan="on", timeout_graceful_shutdown=_GRACE_S))
    logger.info("operations center on http://%s:%d (API /api/v1, /readyz)", host, port)

    # The service can die (a fatal error in its worker): then stop serving, so a supervisor
    # restarts the whole process instead of leaving an API without rules.
    def watch() -> None:
        while not stop.wait(1.0):
            if gate.failure() is not None:
                logger.error("the ops service failed; stopping the API")
                server.should_exit = True
                return

    threading.Thread(target=watch, name="ops-watch", daemon=True).start()
    try:
        server.run()
    finally:
        stop.set()
    if gate.failure() is not None:
        return EXIT_FAILED
    return EXIT_OK if server.started or stop.is_set() else EXIT_FAILED


def _migrate(repo: OpsRepository, stop: threading.Event) -> bool:
    delay = 0.5
    while True:
        try:
            repo.migrate()
            return True
        except RepositoryUnavailable as exc:
            logger.warning("store unavailable for migrations, retrying in %.1f s: %s", delay, exc)
            if stop.wait(delay):
                return False
            delay = min(delay * 2, 10.0)


if __name__ == "__main__":
    from smartward.cli import main as smartward_main

    sys.exit(smartward_main(["ops", *sys.argv[1:]]))
