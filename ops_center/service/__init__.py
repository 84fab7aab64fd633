"""The ops service: the operations center's own MQTT consumer that runs the rules.

:func:`open_service` builds one from settings (registry, rules, patterns, the ops store and
the snapshot table); :class:`OpsService` is the running service.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from contract.registry import Registry, load_registry
from ops_center.adapters.repository import OpsRepository
from ops_center.feed import Feed
from ops_center.rules.loader import load_patterns, load_rules
from ops_center.service.service import OpsService, ServiceCounters, ServiceProgress
from ops_center.service.settings import OpsServiceSettings
from ops_center.service.state import StateStore, open_state_store


@contextmanager
def open_service(
    settings: OpsServiceSettings,
    repo: OpsRepository,
    feed: Feed | None,
    *,
    registry: Registry | None = None,
    state: StateStore | None = None,
    name: str = "ops",
    client_id: str | None = None,
) -> Iterator[OpsService]:
    """A started service (stopped gracefully on exit). ``state`` defaults to the
    ``ops_service_state`` table of ``settings.db_url``."""
    reg = registry if registry is not None else load_registry(settings.registry)
    rules = load_rules(settings.rule_overlays, registry=reg)
    patterns = load_patterns(settings.ops_patterns)
    own_state = state is None
    store = state if state is not None else open_state_store(settings.db_url)
    try:
        service = OpsService(settings, reg, repo, feed, store, rules=rules, patterns=patterns, name=name,
                             client_id=client_id)
        with service:
            yield service
    finally:
        if own_state:
            store.close()


__all__ = ["OpsService", "OpsServiceSettings", "ServiceCounters", "ServiceProgress", "open_service"]
