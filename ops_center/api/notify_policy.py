"""The notification policy as the API sees it (``SMARTWARD_NOTIFY_POLICY``, the file the ops
service uses), and the ``resolved`` notice a person's resolve inserts in its own transaction.

Issue #13: a notification is created in the same transaction as the incident change that
causes it. When a person resolves an incident through the API, whoever was told of it (every
(contact, channel) with an earlier notification of it) gets a ``resolved`` row in the outbox
with the resolve itself, so the message exists even if the ops service is down at that moment;
its sender delivers it whenever it runs. The service's own insert of the same keys, when it
hears of the action, is a no-op (the outbox's unique key).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from ops_center.adapters.records import AlertRecord, IncidentRecord, ResolvedNotice
from ops_center.api.deps import AppState
from ops_center.domain.notify import NotifyPolicy
from ops_center.notify.loader import PolicyError, load_policy
from ops_center.notify.planner import resolved_notice
from ops_center.service.actions import ResolvedNoticeFor

logger = logging.getLogger(__name__)

_lock = threading.Lock()
# path → (its modification time, the registry it was checked against, the policy): re-read when
# the file changes; one entry per file.
_policies: dict[str, tuple[int, object, NotifyPolicy]] = {}


def policy(state: AppState) -> NotifyPolicy:
    """The policy file the ops service uses, re-read when it changes; the empty policy (nobody
    notified) without one, or when it cannot be read (logged: the service refuses to start then)."""
    path = state.settings.notify_policy
    if path is None:
        return NotifyPolicy.empty()
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return NotifyPolicy.empty()
    key = str(path)
    with _lock:
        cached = _policies.get(key)
    if cached is not None and cached[0] == mtime and cached[1] is state.registry:
        return cached[2]
    try:
        loaded = load_policy(path, registry=state.registry)
    except PolicyError as exc:
        logger.error("notification policy unreadable: %s", exc)
        return NotifyPolicy.empty()
    with _lock:
        _policies[key] = (mtime, state.registry, loaded)
    return loaded


def resolved_notice_for(state: AppState, alerts: Sequence[AlertRecord] = ()) -> ResolvedNoticeFor | None:
    """What a resolve through the API inserts with itself: the ``resolved`` notice (the message
    rendered as the ops service renders it; its recipients are found in SQL, in the same
    transaction). None when the policy notifies nobody."""
    if not policy(state).active:
        return None
    registry, public_url, now = state.registry, state.settings.public_url, state.now

    def notice(incident: IncidentRecord) -> ResolvedNotice | None:
        at = incident.resolved_at or now()
        return resolved_notice(incident, alerts, registry, public_url, at)

    return notice
