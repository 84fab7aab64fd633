"""Persistence of the operations center: the ``OpsRepository`` port and its SQL adapters
(``SqliteOpsRepository``, ``PostgresOpsRepository``), with their own numbered migrations."""
