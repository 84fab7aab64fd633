"""Prometheus metrics of the API, in a registry of the app's own (no process-global
collectors: several apps in one process, as in tests, do not collide)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ops_center.feed import Feed

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ApiMetrics:
    def __init__(self, feed: Feed) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "smartward_api_requests", "HTTP requests", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "smartward_api_request_seconds",
            "HTTP request latency",
            ["route"],
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.login_failures = Counter("smartward_api_login_failures", "failed logins", registry=r)
        self.rate_limited = Counter("smartward_api_rate_limited", "requests refused with 429", registry=r)
        self.denials = Counter(
            "smartward_api_denials", "requests denied by scope or role", ["kind"], registry=r
        )
        self.audit_errors = Counter(
            "smartward_api_audit_write_errors", "audit entries that could not be written", registry=r
        )
        self.stream_events = Counter(
            "smartward_api_stream_events", "events sent to live-stream clients", registry=r
        )
        clients = Gauge("smartward_api_stream_clients", "live-stream clients connected", registry=r)
        clients.set_function(lambda: feed.stats.subscribers)
        dropped = Gauge(
            "smartward_api_stream_dropped_clients", "slow live-stream clients dropped (total)", registry=r
        )
        dropped.set_function(lambda: feed.stats.dropped_clients)
        published = Gauge(
            "smartward_feed_published_events", "events published to the change feed (total)", registry=r
        )
        published.set_function(lambda: feed.stats.published)


class MetricsMiddleware:
    """Counts requests by route template (never by raw path: ids would explode the labels)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(scope["method"], template, str(status)).inc()
            if template != "/api/v1/stream":
                self.metrics.latency.labels(template).observe(time.perf_counter() - start)
