"""``SqlOpsRepository``: the ``OpsRepository`` on one SQL database. It holds one object per
aggregate port (``incidents``, ``gateways``, ``users``, ``security``, ``maintenance``,
``readings``; ops_center/adapters/sql_*.py), each running on this database's
connections; callers take the one they need (``repo.users.get_user(...)``). The SQLite and
PostgreSQL adapters (sqlite.py, postgres.py) are subclasses that supply the connections and
the dialect's hooks (``SqlDatabase``, ops_center/adapters/sql_base.py).
"""

from __future__ import annotations

from abc import ABC

from ops_center.adapters.sql_base import SqlDatabase
from ops_center.adapters.sql_gateways import SqlGatewayRepository
from ops_center.adapters.sql_incidents import SqlIncidentRepository
from ops_center.adapters.sql_readings import SqlReadingsReader
from ops_center.adapters.sql_security import SqlMaintenanceRepository, SqlSecurityEventRepository
from ops_center.adapters.sql_users import SqlUserRepository


class SqlOpsRepository(SqlDatabase, ABC):
    def __init__(self) -> None:
        self.incidents = SqlIncidentRepository(self)
        self.gateways = SqlGatewayRepository(self)
        self.users = SqlUserRepository(self)
        self.security = SqlSecurityEventRepository(self)
        self.maintenance = SqlMaintenanceRepository(self)
        self.readings = self._readings_reader()

    def _readings_reader(self) -> SqlReadingsReader:
        """The readings reader of this dialect (PostgreSQL has a faster ``latest_values``)."""
        return SqlReadingsReader(self)
