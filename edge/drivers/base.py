"""The driver port: how the agent reads sensors.

A driver hands over the readings taken since its previous poll; each reading carries its
own timestamp (the time it was measured), which the platform stores as is. A driver that
can also tell whether the uplink works (a modem's signal, a simulated outage) implements
:class:`LinkProbe`; the agent then stops using the network while the link is down and keeps
reading into its outbox.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from contract.models import Reading


class Driver(Protocol):
    def poll(self, now: datetime) -> list[Reading]:
        """Readings taken since the previous poll, up to ``now``."""
        ...


class LinkProbe(Protocol):
    def link_up(self, now: datetime) -> bool:
        """True when the uplink can carry traffic at ``now``."""
        ...
