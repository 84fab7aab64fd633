"""Roles live in :mod:`ops_center.domain.roles` (the adapters' records need them, and the
adapters never import ``security``: docs/design.md). This name stays for the callers that
import it from here."""

from __future__ import annotations

from ops_center.domain.roles import GLOBAL_ROLES, PERMISSIONS, ROLES, SITE_ROLES, Action, Role, is_role, may

__all__ = ["GLOBAL_ROLES", "PERMISSIONS", "ROLES", "SITE_ROLES", "Action", "Role", "is_role", "may"]
