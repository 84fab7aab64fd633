"""The user rows behind access tokens, re-read at most ``principal_cache_s`` apart.

Every request resolves its token to the user as stored (deps.principal_from_token): the
row decides whether the token still holds (disabled, token version, role, sites) and what
the user may see. Reading it on every request cost a trip to the thread pool and a query,
which for the two routes every open operations screen polls was a fifth of the request
(docs/performance.md, "Ops API"). So each process keeps the rows it read, with the scope
built from them, for ``ttl_s`` (1 s by default): a disabled user, a changed role or a bumped
token version is refused within that bound in every worker process, whoever made the change
(``smartward users`` runs in another process, so nothing here can be told). ``ttl_s`` 0
reads the row on every request.

Only rows are kept, never a decision: the claims of each request's own token are compared
with the row every time, so a token issued before a change is refused as soon as the row
is re-read. Bounded: at most ``max_users`` rows (least recently used dropped first).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from ops_center.adapters.records import UserRecord
from ops_center.security.scope import Scope


@dataclass(frozen=True, slots=True)
class KnownUser:
    user: UserRecord
    scope: Scope
    read_at: float  # monotonic time the row was read
    # The user's revoked login sessions (logout, refresh-token reuse), read with the row: an
    # access token of one of them is refused within the same bound (issue #10).
    revoked_sessions: frozenset[str] = frozenset()


class UserRows:
    def __init__(
        self, ttl_s: float, *, max_users: int = 4096, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s = ttl_s
        self.max_users = max_users
        self._monotonic = monotonic
        self._rows: OrderedDict[str, KnownUser] = OrderedDict()
        self._lock = threading.Lock()  # the event loop reads, the thread pool writes

    def get(self, name: str) -> KnownUser | None:
        """The row read less than ``ttl_s`` ago, or None."""
        if self.ttl_s <= 0:
            return None
        with self._lock:
            known = self._rows.get(name)
            if known is None:
                return None
            if self._monotonic() - known.read_at >= self.ttl_s:
                del self._rows[name]
                return None
            self._rows.move_to_end(name)
            return known

    def put(
        self, user: UserRecord, scope: Scope, read_at: float, revoked_sessions: frozenset[str] = frozenset()
    ) -> None:
        """Remember a row read at ``read_at`` (taken before the query: the row is at least
        that fresh)."""
        if self.ttl_s <= 0:
            return
        with self._lock:
            self._rows[user.name] = KnownUser(user, scope, read_at, revoked_sessions)
            self._rows.move_to_end(user.name)
            while len(self._rows) > self.max_users:
                self._rows.popitem(last=False)

    def forget(self, name: str) -> None:
        with self._lock:
            self._rows.pop(name, None)

    def now(self) -> float:
        return self._monotonic()
