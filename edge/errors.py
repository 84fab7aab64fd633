"""One exception root for the edge agent (docs/style.md rule 8)."""

from __future__ import annotations


class EdgeError(Exception):
    """Root of every error raised by the edge package."""


class ConfigError(EdgeError):
    """Settings or command-line arguments that cannot work (bad broker URL, unknown gateway)."""


class OutboxError(EdgeError):
    """The durable outbox cannot be opened or written. Permanent for the running agent."""


class OutboxLocked(OutboxError):
    """Another agent process already owns this outbox directory."""


class DriverError(EdgeError):
    """A sensor driver cannot be built (e.g. the simulators package is not installed)."""
