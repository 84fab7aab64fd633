"""Roles and what each may do (docs/design.md, Roles). What a role may *see* is its scope
(:mod:`ops_center.security.scope`); what it may *do* is here, in one table.

Pure data, in the domain so that the store's records (``ops_center.adapters.records``) and
the security package can both name a ``Role`` without the adapters importing ``security``
(docs/design.md, import rules)."""

from __future__ import annotations

from types import MappingProxyType
from typing import Final, Literal, get_args

Role = Literal["ward_staff", "cluster_manager", "city_leader", "admin"]
ROLES: Final[tuple[Role, ...]] = get_args(Role)

# Roles that see every site (their `sites` list is ignored).
GLOBAL_ROLES: Final[frozenset[Role]] = frozenset({"city_leader", "admin"})
# Roles bound to the sites listed on the user (at least one).
SITE_ROLES: Final[frozenset[Role]] = frozenset({"ward_staff", "cluster_manager"})

Action = Literal[
    "incident.acknowledge",
    "incident.resolve",
    "incident.assign",
    "incident.note",
    "incident.escalate",
    "maintenance.set",
    "city.read",
    "admin",
    "device.command",
]

PERMISSIONS: Final[MappingProxyType[Action, frozenset[Role]]] = MappingProxyType(
    {
        # City leaders read everything, annotate and escalate, but do not run the lifecycle
        # of a ward's incident: that is the ward's (or the cluster's) own job.
        "incident.acknowledge": frozenset({"ward_staff", "cluster_manager", "admin"}),
        "incident.resolve": frozenset({"ward_staff", "cluster_manager", "admin"}),
        "incident.assign": frozenset({"ward_staff", "cluster_manager", "admin"}),
        "incident.note": frozenset({"ward_staff", "cluster_manager", "city_leader", "admin"}),
        "incident.escalate": frozenset({"ward_staff", "cluster_manager", "city_leader", "admin"}),
        # Maintenance windows silence a site's alerts: set by the people who run that site.
        "maintenance.set": frozenset({"ward_staff", "cluster_manager", "admin"}),
        "city.read": frozenset({"city_leader", "admin"}),
        "admin": frozenset({"admin"}),
        # Commands to a site's devices (street lights): the site's own staff and admins;
        # city leaders watch, they do not switch a ward's lamps (docs/design.md, Roles).
        "device.command": frozenset({"ward_staff", "cluster_manager", "admin"}),
    }
)


def may(role: Role, action: Action) -> bool:
    return role in PERMISSIONS[action]


def is_role(value: str) -> bool:
    return value in ROLES
