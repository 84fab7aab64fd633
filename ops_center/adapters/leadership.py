"""Which ``ops serve`` evaluates the rules: a PostgreSQL session advisory lock (docs/scale-out.md).

Several ``ops serve`` processes may share one PostgreSQL/TimescaleDB store (H3 in
docs/reliability.md); exactly one of them, the leader, consumes telemetry into the rule engine
and writes alerts and incidents. The leader holds ``pg_try_advisory_lock(key)`` on a
connection of its own; the others try to take it every second.

Why a session advisory lock rather than a lease row with an expiry: the lock lives exactly as
long as the holder's database session. A leader killed with ``kill -9`` closes its socket and
the server drops the lock at once (no expiry to wait out, no clocks to compare); a leader cut
off from the database loses the session once TCP keepalives give up, and without the database
it could not write anything anyway. A lease would need a renewal interval and a margin for
clock skew, and would hand over only after it expired.

The connection is autocommit, with TCP keepalives; ``target_session_attrs=read-write`` in a
multi-host URL lands it on the primary, as the store's pool. No I/O happens in the constructor.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from typing import Final

import psycopg

logger = logging.getLogger(__name__)

# A dead peer is noticed within ~11 s when idle (keepalives) and ~10 s with a query in flight
# (tcp_user_timeout, ms), instead of the kernel's minutes.
_KEEPALIVES: Final = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3,
                      "tcp_user_timeout": 10_000}


def lock_key(name: str) -> int:
    """The advisory lock's key for one service name (a signed 64-bit integer, stable)."""
    digest = hashlib.blake2b(f"smartward-ops-evaluator:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class AdvisoryLeadership:
    """Try to become, and stay, the one evaluator for ``name``. Not thread-safe: one owner
    (the standby gate's thread) calls it."""

    def __init__(self, url: str, name: str = "ops", *, connect_timeout_s: float = 3.0) -> None:
        self.url = url
        self.name = name
        self.key = lock_key(name)
        self._connect_timeout_s = connect_timeout_s
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._held = False
        self.reachable = False  # the last attempt reached the primary (then False means: taken)

    @property
    def held(self) -> bool:
        """Whether this process held the lock at the last check (no I/O)."""
        return self._held

    def try_acquire(self) -> bool:
        """Take the lock if it is free; True when this process holds it now."""
        try:
            conn = self._connection()
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
        except psycopg.Error as exc:
            self._drop(f"cannot try the evaluator lock: {exc}")
            self.reachable = False
            return False
        self.reachable = True
        self._held = bool(row and row[0])
        return self._held

    def check(self) -> bool:
        """Is the lock still ours? A lost session (the server restarted, failed over, or
        dropped us) means it is not; False then, and ``try_acquire`` may take it again."""
        if not self._held or self._conn is None:
            return False
        try:
            # A session lock lasts as long as its session: the session answering is the lock held.
            self._conn.execute("SELECT 1").fetchone()
        except psycopg.Error as exc:
            self._drop(f"the evaluator lock's session is gone: {exc}")
            return False
        return True

    def release(self) -> None:
        """Give the lock up (a graceful stop): the standby takes over within its retry interval."""
        conn, self._conn = self._conn, None
        self._held = False
        if conn is None:
            return
        try:
            conn.execute("SELECT pg_advisory_unlock_all()")
        except psycopg.Error:
            pass  # closing the session releases it as well
        finally:
            conn.close()

    def _connection(self) -> psycopg.Connection[tuple[object, ...]]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                conninfo=psycopg.conninfo.make_conninfo(
                    self.url, connect_timeout=max(1, int(self._connect_timeout_s)),
                    application_name=f"smartward-ops-leader:{self.name}", **_KEEPALIVES),
                autocommit=True)
        return self._conn

    def _drop(self, why: str) -> None:
        if self._held:
            logger.warning("%s", why)
        else:
            logger.debug("%s", why)
        self._held = False
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()
