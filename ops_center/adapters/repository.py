"""``OpsRepository``: the whole ops store, one attribute per aggregate port of
ops_center/adapters/ports.py (``repo.incidents``, ``repo.users``, ...), plus the store's
lifecycle. Only what truly needs the whole store takes it (the ops service and the API's
composition roots, the factory's ``open_*_store``); everything else takes the one or two
ports it uses, e.g. ``repo.incidents`` (an ``IncidentRepository``).

Adapters: ``SqliteOpsRepository`` (ops_center/adapters/sqlite.py) and
``PostgresOpsRepository`` (ops_center/adapters/postgres.py, plain PostgreSQL or TimescaleDB),
each holding one SQL object per aggregate (ops_center/adapters/sql.py).
``open_repository(url)`` (ops_center/adapters/factory.py) picks one from ``SMARTWARD_DB_URL``.

The errors and value types are importable from here too (most callers name them so).
"""

from __future__ import annotations

from typing import Protocol

from ops_center.adapters.errors import (
    Conflict,
    RepositoryError,
    RepositoryUnavailable,
    UnknownUser,
    UserExists,
)
from ops_center.adapters.ports import (
    GatewayRepository,
    IncidentMutation,
    IncidentRepository,
    IncidentUpdate,
    MaintenanceRepository,
    ReadingsReader,
    Resolution,
    SecurityEventRepository,
    ServiceSnapshot,
    Sites,
    StepOutcome,
    StepWrite,
    StoredVersion,
    UserRepository,
)

__all__ = [
    "Conflict",
    "IncidentMutation",
    "IncidentUpdate",
    "OpsRepository",
    "RepositoryError",
    "RepositoryUnavailable",
    "Resolution",
    "ServiceSnapshot",
    "Sites",
    "StepOutcome",
    "StepWrite",
    "StoredVersion",
    "UnknownUser",
    "UserExists",
]


class OpsRepository(Protocol):
    # Read-only properties: an adapter may hold any implementation of each port.
    @property
    def incidents(self) -> IncidentRepository: ...

    @property
    def gateways(self) -> GatewayRepository: ...

    @property
    def users(self) -> UserRepository: ...

    @property
    def security(self) -> SecurityEventRepository: ...

    @property
    def maintenance(self) -> MaintenanceRepository: ...

    @property
    def readings(self) -> ReadingsReader: ...

    def migrate(self) -> None:
        """Create or upgrade the ops tables (numbered, recorded in ops_schema_migrations)."""

    def ping(self) -> bool:
        """True when the database answers."""

    def close(self) -> None: ...
