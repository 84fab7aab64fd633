"""The driver port: how the agent reads sensors.

A driver hands over the readings taken since its previous poll; each reading carries its
own timestamp (the time it was measured), which the platform stores as is. A driver that
can also tell whether the uplink works (a modem's signal, a simulated outage) implements
:class:`LinkProbe`; the agent then stops using the network while the link is down and keeps
reading into its outbox. A driver that can act on its devices (switch or dim a street
light) implements :class:`CommandTarget`; without it every operator command is answered
``unsupported_command``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from contract.models import Reading


class Driver(Protocol):
    def poll(self, now: datetime) -> list[Reading]:
        """Readings taken since the previous poll, up to ``now``."""
        ...


class LinkProbe(Protocol):
    def link_up(self, now: datetime) -> bool:
        """True when the uplink can carry traffic at ``now``."""
        ...


@runtime_checkable
class ErrorSource(Protocol):
    """The optional error count of a driver whose reads fail apart from ``poll`` (a device
    read on the driver's own thread): the agent adds it to ``driver_errors``."""

    def take_errors(self) -> int:
        """Failed reads since the previous call."""
        ...


@runtime_checkable
class CommandTarget(Protocol):
    """The optional command hook of a driver (docs/contract.md ``cmd``). Called on the agent's
    thread, like ``poll``, so a driver needs no locking between the two."""

    def command(self, name: str, sensor: str, args: Mapping[str, Any], *, at: datetime) -> tuple[bool, str]:
        """Apply ``name`` with ``args`` to ``sensor`` from ``at`` (the agent's clock) on;
        ``(ok, detail)`` with ``detail`` a short code (``applied``, ``bad_args``...)."""
        ...
