"""``Scope``: what one user may see. The API builds it in ONE dependency
(``ops_center.api.deps.get_scope``) and every route, the live stream, exports and list
filters ask it; nothing else decides visibility."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ops_center.domain.roles import GLOBAL_ROLES, Action, Role, may


@dataclass(frozen=True, slots=True)
class Scope:
    user: str
    role: Role
    sites: frozenset[str]  # the sites visible (for a global role: every known site)
    is_global: bool

    @classmethod
    def for_user(cls, user: str, role: Role, assigned: Iterable[str], known_sites: Iterable[str]) -> Scope:
        known = frozenset(known_sites)
        if role in GLOBAL_ROLES:
            return cls(user, role, known, True)
        # A site that left the registry is no longer visible, even if still assigned.
        return cls(user, role, frozenset(assigned) & known, False)

    def can_see(self, site: str | None) -> bool:
        """Rows without a site (e.g. a dead letter from an unknown gateway) are global."""
        if site is None:
            return self.is_global
        return self.is_global or site in self.sites

    def may(self, action: Action) -> bool:
        return may(self.role, action)

    def site_filter(self) -> tuple[str, ...] | None:
        """The sites to filter a query on; None: no filter (a global role)."""
        return None if self.is_global else tuple(sorted(self.sites))

    def narrow(self, site: str | None) -> tuple[str, ...] | None:
        """A list filter ``?site=``: within the scope only. An invisible site filters to
        nothing (list endpoints silently filter, docs/contract.md)."""
        if site is None:
            return self.site_filter()
        return (site,) if self.can_see(site) else ()
