"""The ops service: the operations center's own MQTT consumer that runs the rules.

:func:`open_service` builds one from settings (registry, rules, patterns, the ops store);
:class:`OpsService` is the running service.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from contract.registry import Registry, load_registry
from ops_center.adapters.repository import OpsRepository
from ops_center.feed import Feed
from ops_center.rulebook.loader import load_patterns, load_rules
from ops_center.service.service import OpsService, ServiceCounters, ServiceProgress
from ops_center.service.settings import OpsServiceSettings


@contextmanager
def open_service(
    settings: OpsServiceSettings,
    repo: OpsRepository,
    feed: Feed | None,
    *,
    registry: Registry | None = None,
    name: str = "ops",
    client_id: str | None = None,
) -> Iterator[OpsService]:
    """A started service (stopped gracefully on exit). Its rule state lives in ``repo``
    (``ops_service_state``, written with each step it covers)."""
    reg = registry if registry is not None else load_registry(settings.registry)
    rules = load_rules(settings.rule_overlays, registry=reg)
    patterns = load_patterns(settings.ops_patterns)
    service = OpsService(settings, reg, repo, feed, rules=rules, patterns=patterns, name=name,
                         client_id=client_id)
    with service:
        yield service


__all__ = ["OpsService", "OpsServiceSettings", "ServiceCounters", "ServiceProgress", "open_service"]
