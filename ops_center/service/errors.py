"""Errors of the ops service (one root, docs/style.md rule 8)."""

from __future__ import annotations


class ServiceError(Exception):
    """Root of the ops service's errors."""


class ConfigError(ServiceError):
    """Settings that cannot work (a bad broker URL, an unknown store scheme)."""


class StateUnavailable(ServiceError):
    """Transient: the snapshot table cannot be read or written right now."""


class ServiceStopped(ServiceError):
    """A command arrived while the service is not running."""
