"""Prometheus metrics of the ingest, and the small HTTP server for /metrics, /healthz, /readyz.

Each worker has its own ``CollectorRegistry`` (no import-time globals), so several workers
in one test process do not collide.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from contract.errors import DEAD_LETTER_REASONS

logger = logging.getLogger(__name__)

_LAG_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 86_400)
_LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.received = Counter("smartward_ingest_messages_received", "MQTT messages received",
                                ["kind"], registry=r)
        self.stored_readings = Counter("smartward_ingest_readings_stored", "Readings stored", registry=r)
        self.stored_batches = Counter("smartward_ingest_batches_stored", "Batches stored", registry=r)
        self.duplicates = Counter("smartward_ingest_batches_duplicate",
                                  "Redelivered batches that were already stored (no-op)", registry=r)
        self.dead_letters = Counter("smartward_ingest_dead_letters", "Dead letters by reason",
                                    ["reason"], registry=r)
        for reason in DEAD_LETTER_REASONS:
            self.dead_letters.labels(reason)
        self.dropped = Counter("smartward_ingest_dropped_declared",
                               "dropped_through advances reported by gateways (recorded as lost)",
                               registry=r)
        self.lag_reading = Histogram("smartward_ingest_lag_reading_seconds",
                                     "received_at minus the newest reading time of a batch",
                                     buckets=_LAG_BUCKETS_S, registry=r)
        self.lag_sent = Histogram("smartward_ingest_lag_sent_seconds",
                                  "received_at minus the batch's sent_at", buckets=_LAG_BUCKETS_S, registry=r)
        self.commit_lag = Histogram("smartward_ingest_commit_lag_seconds",
                                    "From MQTT receipt to commit and ack", buckets=_LATENCY_BUCKETS_S,
                                    registry=r)
        self.write_seconds = Histogram("smartward_ingest_store_write_seconds",
                                       "Duration of one store transaction", buckets=_LATENCY_BUCKETS_S,
                                       registry=r)
        self.flush_messages = Histogram("smartward_ingest_flush_messages", "MQTT messages per transaction",
                                        buckets=(1, 5, 10, 25, 50, 100, 200, 500, 1000, 2000), registry=r)
        self.queue_depth = Gauge("smartward_ingest_queue_depth", "Messages waiting for the writer",
                                 registry=r)
        self.store_errors = Counter("smartward_ingest_store_errors", "Store errors",
                                    ["kind"], registry=r)
        self.acks_published = Counter("smartward_ingest_acks_published", "Ack watermarks published",
                                      registry=r)
        self.watermark_overflow = Gauge("smartward_ingest_watermark_pending_overflow",
                                        "Handled seqs forgotten because a gateway's pending set was full",
                                        registry=r)
        self.ready = Gauge("smartward_ingest_ready", "1 when broker connected and store answering",
                           registry=r)
        self.broker_connected = Gauge("smartward_ingest_broker_connected", "1 when connected to a broker",
                                      registry=r)
        self.loop_errors = Counter("smartward_ingest_loop_errors",
                                   "Unexpected exceptions caught at a loop's top", ["where"], registry=r)
        self.unhandled = Counter("smartward_ingest_unhandled_messages",
                                 "Messages dead-lettered because handling them failed (a bug, or the "
                                 "store refusing them), by stage", ["stage"], registry=r)
        for stage in ("classify", "commit", "store_refused", "letter_minimal", "letter_lost"):
            self.unhandled.labels(stage)
        self.mirror_points = Counter("smartward_mirror_points_written", "Points written to the mirror",
                                     registry=r)
        self.mirror_rejected = Counter("smartward_mirror_points_rejected",
                                       "Points the mirror refused with a 4xx (skipped, logged)", registry=r)
        self.mirror_errors = Counter("smartward_mirror_errors", "Transient mirror write failures",
                                     registry=r)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class HealthServer:
    """``/metrics``, ``/healthz`` (liveness) and ``/readyz`` (readiness) on one small port.

    Port 0 picks a free port (``.port`` tells which).
    """

    def __init__(self, metrics: IngestMetrics, *, live: Callable[[], bool], ready: Callable[[], bool],
                 host: str = "127.0.0.1", port: int = 0) -> None:
        handler = _make_handler(metrics, live, ready)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="ingest-http", daemon=True)

    def __enter__(self) -> HealthServer:
        self._thread.start()
        logger.info("metrics and health on port %d", self.port)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _make_handler(metrics: IngestMetrics, live: Callable[[], bool],
                  ready: Callable[[], bool]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, metrics.exposition(), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                ok = live()
                self._send(200 if ok else 503, b"ok\n" if ok else b"not live\n")
            elif path == "/readyz":
                ok = ready()
                self._send(200 if ok else 503, b"ready\n" if ok else b"not ready\n")
            else:
                self._send(404, b"not found\n")

        def _send(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            logger.debug("http: " + format, *args)

    return Handler
