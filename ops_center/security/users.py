"""User administration shared by ``smartward users`` and ``smartward demo``: validation of
role and sites against the registry, hashing, and an audit entry for every change."""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime

from contract.registry import Registry
from ops_center.adapters.errors import UnknownUser
from ops_center.adapters.ports import UserRepository
from ops_center.adapters.records import AuditEntry, UserRecord
from ops_center.domain.roles import GLOBAL_ROLES, ROLES, Role
from ops_center.security.passwords import Passwords

USER_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class UserAdminError(ValueError):
    """The text is for the command line (vi / en); ``code`` and ``params`` name the same error
    in the API's message catalog (ops_center/messages.py)."""

    def __init__(self, text: str, code: str = "user_invalid", **params: object) -> None:
        super().__init__(text)
        self.code = code
        self.params = params


def validate(name: str, role: str, sites: Sequence[str], registry: Registry) -> tuple[Role, tuple[str, ...]]:
    if not USER_NAME.match(name):
        raise UserAdminError(
            f"tên không hợp lệ / invalid user name {name!r} (a-z, 0-9, . _ -; max 64)", "user_name_invalid"
        )
    if role not in ROLES:
        raise UserAdminError(
            f"vai trò không hợp lệ / unknown role {role!r} (one of {', '.join(ROLES)})",
            "user_role_invalid",
            roles=", ".join(ROLES),
        )
    unknown = [s for s in sites if s not in registry.sites]
    if unknown:
        raise UserAdminError(
            f"địa bàn không có trong sổ đăng ký / unknown site(s): {', '.join(unknown)}",
            "user_unknown_site",
            sites=", ".join(unknown),
        )
    typed: Role = role  # narrowed by the membership test above
    if typed in GLOBAL_ROLES:
        return typed, ()
    if not sites:
        raise UserAdminError(
            f"vai trò {role} cần --site / role {role} needs at least one --site",
            "user_sites_required",
            role=role,
        )
    return typed, tuple(dict.fromkeys(sites))


def add_user(
    repo: UserRepository,
    passwords: Passwords,
    registry: Registry,
    *,
    name: str,
    role: str,
    sites: Sequence[str],
    password: str,
    actor: str,
    ip: str | None = None,
) -> UserRecord:
    typed, clean = validate(name, role, sites, registry)
    now = datetime.now(UTC)
    user = UserRecord(
        name=name,
        password_hash=passwords.hash(password),
        role=typed,
        sites=clean,
        created_at=now,
        updated_at=now,
    )
    repo.add_user(user)
    repo.append_audit(
        AuditEntry(
            at=now,
            actor=actor,
            action="user.add",
            outcome="ok",
            target=f"user:{name}",
            site=clean[0] if len(clean) == 1 else None,
            ip=ip,
            detail=f"role={typed} sites={','.join(clean) or '*'}",
        )
    )
    return user


def set_password(
    repo: UserRepository, passwords: Passwords, *, name: str, password: str, actor: str, ip: str | None = None
) -> UserRecord:
    now = datetime.now(UTC)
    try:
        user = repo.update_user(name, password_hash=passwords.hash(password), at=now)
    except UnknownUser:
        raise _no_such_user(name) from None
    repo.append_audit(
        AuditEntry(at=now, actor=actor, action="user.passwd", outcome="ok", target=f"user:{name}", ip=ip)
    )
    return user


def set_disabled(
    repo: UserRepository, *, name: str, disabled: bool, actor: str, ip: str | None = None
) -> UserRecord:
    now = datetime.now(UTC)
    try:
        user = repo.update_user(name, disabled=disabled, at=now)
    except UnknownUser:
        raise _no_such_user(name) from None
    repo.append_audit(
        AuditEntry(
            at=now,
            actor=actor,
            action="user.disable" if disabled else "user.enable",
            outcome="ok",
            target=f"user:{name}",
            ip=ip,
        )
    )
    return user


def _no_such_user(name: str) -> UserAdminError:
    return UserAdminError(f"không có người dùng / no such user: {name}", "user_not_found", name=name)


def create_demo_users(
    repo: UserRepository,
    registry: Registry,
    passwords: Passwords | None = None,
    *,
    password: str | None = None,
) -> dict[str, str]:
    """One user per role for ``smartward demo`` only: ``ward_staff`` of the first ward,
    ``cluster_manager`` of the first industrial cluster, a city leader and an admin.
    Returns name -> password (printed by the demo). Existing users are left alone."""
    pw = passwords or Passwords()
    wards = [s.id for s in registry.spec.sites if s.kind == "ward"]
    clusters = [s.id for s in registry.spec.sites if s.kind == "industrial_cluster"]
    first_site = registry.spec.sites[0].id
    plan: list[tuple[str, Role, tuple[str, ...]]] = [
        ("demo-ward", "ward_staff", (wards[0] if wards else first_site,)),
        ("demo-cluster", "cluster_manager", (clusters[0] if clusters else first_site,)),
        ("demo-leader", "city_leader", ()),
        ("demo-admin", "admin", ()),
    ]
    out: dict[str, str] = {}
    for name, role, sites in plan:
        if repo.get_user(name) is not None:
            continue
        secret = password or secrets.token_urlsafe(12)
        add_user(repo, pw, registry, name=name, role=role, sites=sites, password=secret, actor="demo")
        out[name] = secret
    return out
