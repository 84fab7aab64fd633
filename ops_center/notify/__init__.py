"""Notifications, escalation and acknowledgement from a phone (issue #13).

Layers: the policy (pure, ops_center/domain/notify.py), its loader (``loader``), message text
(``render``), channel adapters (``channels``: email and webhook; ``gateways``: SMS and Zalo
ZNS), the outbox (ops_center/adapters/notifications.py, rows written in the evaluation step's
transaction by ``planner``), the sender loop (``sender``) and acknowledge links (``acklink``).
``compose.build_notifier`` composes them from the ops service's settings.
"""
