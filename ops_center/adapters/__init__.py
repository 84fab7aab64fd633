"""Persistence of the operations center: one port per aggregate (``ports.py``), held together by
``OpsRepository`` (``repository.py``: ``repo.incidents``, ``repo.users``, ...); their SQL
(``sql_*.py``) shared by the SQLite and PostgreSQL adapters (``sqlite.py``, ``postgres.py``),
with their own numbered migrations; ``factory.py`` picks one (docs/design.md, "Ops store")."""
