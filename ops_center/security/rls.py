"""Row-level security for PostgreSQL / TimescaleDB (docs/reliability.md S7): a ward's read-only
database role (what its Grafana data source uses) sees only that ward's rows; the city's
sees every site's, and writes nothing either.

``apply_rls(conn)`` (idempotent; ``smartward db migrate`` runs it after the ingest's and the
ops center's migrations, and ``grant_readonly`` runs it again):

- enables row-level security on every table of the schema that has a ``site`` column, and
  on ``sites`` (whose ``id`` is the site), whoever created them;
- adds three policies to each: ``smartward_site_read`` for members of the group role
  ``smartward_readonly`` (SELECT, rows whose site is mapped to the current role in
  ``smartward_rls_sites``), ``smartward_all_sites_read`` for members of
  ``smartward_readonly_all_sites`` (SELECT, every row: the city), and
  ``smartward_service_all`` for members of
  ``smartward_service`` (everything; for deployments that run the ingest or the ops center
  as a non-owner role);
- makes every view of the schema ``security_invoker`` (PostgreSQL 15+), so that a view
  cannot be used to read around the policies of its tables;
- denies direct reads of TimescaleDB chunks (see ``harden_chunks``).

Table owners (the services, as deployed by default) and superusers bypass row-level
security; any other role sees nothing in these tables unless a policy above lets it.
Continuous aggregates (Timescale license only) are views over internal tables and cannot
carry policies: with them, do not grant the ``readings_1m``/``readings_1h`` views to ward
roles (``grant_readonly`` grants tables only).

``grant_readonly(url, site)`` creates (or re-keys) the login role ``smartward_ro_<site>``:
read-only transactions, a statement timeout, member of ``smartward_readonly``, mapped to
the site. Returns (role, password).

``grant_all_sites(url)`` creates (or re-keys) ``smartward_ro_city``, the city leaders' data
source: the same login role and table grants, plus membership of the group
``smartward_readonly_all_sites``, which a third policy on each table,
``smartward_all_sites_read`` (SELECT, ``USING (true)``), lets read every row. A group policy
rather than one ``smartward_rls_sites`` row per site: a site added to the registry later
is visible without re-granting, the ward policy's expression is unchanged (a ward role is
not a member of the group, so it matches only its own mapping as before), and the scope
of a role shows in ``pg_auth_members`` and ``pg_policies`` instead of in data. Nothing is
writable either way: no INSERT/UPDATE/DELETE privilege is granted, whatever the session's
``transaction_read_only``. The two kinds do not mix: re-granting a ward role that is the
all-sites role, or the all-sites role over a role mapped to sites, is refused.
"""

from __future__ import annotations

import secrets
from typing import Final

import psycopg
from psycopg import sql

from contract.models import SLUG_PATTERN

READONLY_GROUP: Final = "smartward_readonly"
SERVICE_GROUP: Final = "smartward_service"
MAP_TABLE: Final = "smartward_rls_sites"
READ_POLICY: Final = "smartward_site_read"
# Members read every site's rows (the city leaders' role, grant_all_sites).
ALL_SITES_GROUP: Final = "smartward_readonly_all_sites"
ALL_SITES_POLICY: Final = "smartward_all_sites_read"
ALL_SITES_ROLE: Final = "smartward_ro_city"
SERVICE_POLICY: Final = "smartward_service_all"
# Site-scoped tables a ward's dashboard has no business reading (admin data), or that hold
# raw payloads: row-level security still applies to them, but they are not granted.
NOT_GRANTED: Final = frozenset(
    {"users", "audit_log", "security_events", "dead_letters", "notifications", MAP_TABLE}
)
# Catalog tables without a site column that dashboards need (units, names).
PUBLIC_TABLES: Final = ("metrics",)
STATEMENT_TIMEOUT: Final = "30s"


def _ensure_group(conn: psycopg.Connection[tuple[object, ...]], name: str) -> None:
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
    if exists is None:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(name)))


def site_tables(conn: psycopg.Connection[tuple[object, ...]]) -> list[tuple[str, str]]:
    """(table, site column) for every ordinary or partitioned table of the current schema
    with a ``site`` column, plus ``sites`` itself (on ``id``)."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = c.oid "
        "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND a.attname = 'site' "
        "AND NOT a.attisdropped ORDER BY c.relname"
    ).fetchall()
    out = [(str(r[0]), "site") for r in rows if r[0] != MAP_TABLE]
    has_sites = conn.execute(
        "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = current_schema() AND c.relname = 'sites' AND c.relkind IN ('r', 'p')"
    ).fetchone()
    if has_sites is not None:
        out.append(("sites", "id"))
    return out


def apply_rls(conn: psycopg.Connection[tuple[object, ...]]) -> list[str]:
    """Enable and (re)create the policies; returns the protected tables. Runs in the
    caller's transaction (commit it)."""
    _ensure_group(conn, READONLY_GROUP)
    _ensure_group(conn, SERVICE_GROUP)
    _ensure_group(conn, ALL_SITES_GROUP)
    conn.execute(
        sql.SQL(
            'CREATE TABLE IF NOT EXISTS {} (role_name name NOT NULL, site text COLLATE "C" NOT NULL, '
            "PRIMARY KEY (role_name, site))"
        ).format(sql.Identifier(MAP_TABLE))
    )
    # A role may read its own mapping (the policies' subquery runs as that role).
    conn.execute(sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(sql.Identifier(MAP_TABLE)))
    conn.execute(sql.SQL("DROP POLICY IF EXISTS own_rows ON {}").format(sql.Identifier(MAP_TABLE)))
    conn.execute(
        sql.SQL("CREATE POLICY own_rows ON {} FOR SELECT USING (role_name = current_user)").format(
            sql.Identifier(MAP_TABLE)
        )
    )
    conn.execute(
        sql.SQL("GRANT SELECT ON {} TO {}").format(sql.Identifier(MAP_TABLE), sql.Identifier(READONLY_GROUP))
    )
    protected = []
    for table, column in site_tables(conn):
        t = sql.Identifier(table)
        conn.execute(sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(t))
        for policy in (READ_POLICY, ALL_SITES_POLICY, SERVICE_POLICY):
            conn.execute(sql.SQL("DROP POLICY IF EXISTS {} ON {}").format(sql.Identifier(policy), t))
        conn.execute(
            sql.SQL(
                "CREATE POLICY {} ON {} FOR SELECT TO {} USING ({} IN (SELECT m.site FROM {} m "
                "WHERE m.role_name = current_user))"
            ).format(
                sql.Identifier(READ_POLICY),
                t,
                sql.Identifier(READONLY_GROUP),
                sql.Identifier(column),
                sql.Identifier(MAP_TABLE),
            )
        )
        conn.execute(
            sql.SQL("CREATE POLICY {} ON {} FOR SELECT TO {} USING (true)").format(
                sql.Identifier(ALL_SITES_POLICY), t, sql.Identifier(ALL_SITES_GROUP)
            )
        )
        conn.execute(
            sql.SQL("CREATE POLICY {} ON {} FOR ALL TO {} USING (true) WITH CHECK (true)").format(
                sql.Identifier(SERVICE_POLICY), t, sql.Identifier(SERVICE_GROUP)
            )
        )
        protected.append(table)
    harden_chunks(conn)
    views = conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = current_schema() AND c.relkind = 'v'"
    ).fetchall()
    for (view,) in views:
        conn.execute(sql.SQL("ALTER VIEW {} SET (security_invoker = true)").format(sql.Identifier(str(view))))
    return protected


def hypertables(conn: psycopg.Connection[tuple[object, ...]]) -> set[str]:
    if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone() is None:
        return set()
    rows = conn.execute(
        "SELECT hypertable_name FROM timescaledb_information.hypertables "
        "WHERE hypertable_schema = current_schema()"
    ).fetchall()
    return {str(r[0]) for r in rows}


def harden_chunks(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    """A hypertable's chunks are tables of their own (in ``_timescaledb_internal``).
    TimescaleDB copies a hypertable's privileges to its chunks, but not its row-level
    security, so a role allowed to read ``readings`` could read every ward's rows straight
    from a chunk. Each chunk: no privilege for the read-only group, and row-level security
    on without a policy for it (deny). Queries through the hypertable are unaffected:
    TimescaleDB checks privileges and policies on the hypertable only.

    Chunks created later: ``grant_readonly`` grants column privileges on hypertables, which
    TimescaleDB 2.19 does not copy to new chunks (tests/integration/test_security_rls.py
    checks it on every run); ``apply_rls`` (every ``db migrate``) hardens them again."""
    if not hypertables(conn):
        return 0
    chunks = conn.execute(
        "SELECT chunk_schema, chunk_name FROM timescaledb_information.chunks "
        "WHERE hypertable_schema = current_schema()"
    ).fetchall()
    for schema, name in chunks:
        ident = sql.Identifier(str(schema), str(name))
        conn.execute(sql.SQL("REVOKE ALL ON {} FROM {}").format(ident, sql.Identifier(READONLY_GROUP)))
        conn.execute(sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(ident))
    return len(chunks)


class RlsError(RuntimeError):
    pass


def role_name(site: str) -> str:
    return "smartward_ro_" + site.replace("-", "_")


def _grant_select(conn: psycopg.Connection[tuple[object, ...]], table: str, hypertable: bool) -> sql.Composed:
    group = sql.Identifier(READONLY_GROUP)
    if not hypertable:
        return sql.SQL("GRANT SELECT ON {} TO {}").format(sql.Identifier(table), group)
    # Column privileges: not copied to chunks created later (see harden_chunks).
    cols = conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped "
        "ORDER BY attnum",
        (table,),
    ).fetchall()
    return sql.SQL("GRANT SELECT ({}) ON {} TO {}").format(
        sql.SQL(", ").join(sql.Identifier(str(c[0])) for c in cols), sql.Identifier(table), group
    )


def _is_member(conn: psycopg.Connection[tuple[object, ...]], role: str, group: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member "
        "JOIN pg_roles g ON g.oid = m.roleid WHERE r.rolname = %s AND g.rolname = %s",
        (role, group),
    ).fetchone()
    return row is not None


def _login_role(conn: psycopg.Connection[tuple[object, ...]], role: str, password: str) -> None:
    """Create or re-key ``role`` as a read-only login of ``smartward_readonly``, and grant
    the group the tables a dashboard reads (``apply_rls`` has run in this transaction)."""
    r = sql.Identifier(role)
    tables = site_tables(conn)
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    verb = "ALTER" if exists else "CREATE"
    conn.execute(
        sql.SQL(
            verb + " ROLE {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS "
            "INHERIT PASSWORD {}"
        ).format(r, sql.Literal(password))
    )
    conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(READONLY_GROUP), r))
    conn.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(r))
    conn.execute(
        sql.SQL("ALTER ROLE {} SET statement_timeout = {}").format(r, sql.Literal(STATEMENT_TIMEOUT))
    )
    dbname = conn.info.dbname
    conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(dbname), r))
    conn.execute(
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
            sql.Identifier(str(conn.execute("SELECT current_schema()").fetchone()[0])),  # type: ignore[index]
            sql.Identifier(READONLY_GROUP),
        )
    )
    existing_public = [
        t
        for t in PUBLIC_TABLES
        if conn.execute(
            "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relname = %s",
            (t,),
        ).fetchone()
    ]
    hyper = hypertables(conn)
    for table in [t for t, _ in tables if t not in NOT_GRANTED] + existing_public:
        conn.execute(_grant_select(conn, table, table in hyper))
    harden_chunks(conn)


def grant_readonly(url: str, site: str) -> tuple[str, str]:
    """Create or re-key the read-only login role of ``site``; (role, password)."""
    import re

    if not re.match(SLUG_PATTERN, site):
        raise ValueError(f"not a site id: {site!r}")
    role = role_name(site)
    password = secrets.token_urlsafe(24)
    with psycopg.connect(url) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('smartward_rls'))")
        apply_rls(conn)
        if _is_member(conn, role, ALL_SITES_GROUP):
            raise RlsError(f"{role} là vai trò toàn thành phố / is the all-sites role, not a ward's")
        _login_role(conn, role, password)
        conn.execute(
            sql.SQL("INSERT INTO {} (role_name, site) VALUES (%s, %s) ON CONFLICT DO NOTHING").format(
                sql.Identifier(MAP_TABLE)
            ),
            (role, site),
        )
    return role, password


def grant_all_sites(url: str) -> tuple[str, str]:
    """Create or re-key ``smartward_ro_city``, which reads every site (present and future)
    and writes nothing; (role, password)."""
    role = ALL_SITES_ROLE
    password = secrets.token_urlsafe(24)
    with psycopg.connect(url) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('smartward_rls'))")
        apply_rls(conn)
        mapped = conn.execute(
            sql.SQL("SELECT site FROM {} WHERE role_name = %s ORDER BY site").format(
                sql.Identifier(MAP_TABLE)
            ),
            (role,),
        ).fetchall()
        if mapped:
            raise RlsError(
                f"{role} đã gắn với địa bàn {', '.join(str(m[0]) for m in mapped)} / "
                f"is already a ward role (mapped to {', '.join(str(m[0]) for m in mapped)})"
            )
        _login_role(conn, role, password)
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(ALL_SITES_GROUP), sql.Identifier(role)))
    return role, password
