"""``/api/v1/users``: user administration for admins (issue #14), the same store functions as
``smartward users`` (ops_center/security/users.py): validation against the registry, Argon2id
hashing, one audit entry per change (with the admin as the actor and their address).

Every other role gets 403 (audited). Disabling a user or setting their password bumps their
token version: their tokens stop working at once in this process and within
``SMARTWARD_PRINCIPAL_CACHE_S`` in every other (ops_center/api/principals.py). An admin may not
disable their own account (409): the last admin would lock everyone out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Path, Request

from ops_center.adapters.records import UserRecord
from ops_center.adapters.repository import UnknownUser, UserExists
from ops_center.api.deps import AdminScopeDep, AppState, StateDep, UsersDep, client_ip
from ops_center.api.errors import ERROR_RESPONSES, ApiError
from ops_center.api.pages import Limit, Offset
from ops_center.api.schemas import USER_NAME_PATTERN, PasswordIn, UserIn, UserOut, UserPage
from ops_center.security.passwords import MIN_PASSWORD_CHARS, PasswordPolicyError
from ops_center.security.scope import Scope
from ops_center.security.users import UserAdminError, add_user, set_disabled, set_password

router = APIRouter(prefix="/users", tags=["users"], responses=ERROR_RESPONSES)

UserNamePath = Annotated[str, Path(pattern=USER_NAME_PATTERN, max_length=64)]


@router.get("", summary="Người dùng / users (admin)")
def list_users(scope: AdminScopeDep, store: UsersDep, limit: Limit = 50, offset: Offset = 0) -> UserPage:
    users = store.list_users()  # by name
    items = [UserOut.of(u) for u in users[offset : offset + limit]]
    return UserPage(items=items, total=len(users), limit=limit, offset=offset)


@router.post("", status_code=201, summary="Thêm người dùng / add a user (admin)")
def create_user(
    request: Request, state: StateDep, scope: AdminScopeDep, store: UsersDep, body: UserIn
) -> UserOut:
    def run() -> UserRecord:
        return add_user(
            store,
            state.passwords,
            state.registry,
            name=body.name,
            role=body.role,
            sites=body.sites,
            password=body.password,
            actor=scope.user,
            ip=client_ip(request),
        )

    return UserOut.of(_change(request, state, scope, "user.add", body.name, run))


@router.post("/{name}/disable", summary="Khóa người dùng / disable a user (admin)")
def disable_user(
    request: Request, state: StateDep, scope: AdminScopeDep, store: UsersDep, name: UserNamePath
) -> UserOut:
    if name == scope.user:
        _failed(request, state, scope, "user.disable", name, "own account")
        raise ApiError(409, "user_self_disable")
    return UserOut.of(_change(request, state, scope, "user.disable", name, lambda: set_disabled(
        store, name=name, disabled=True, actor=scope.user, ip=client_ip(request))))


@router.post("/{name}/enable", summary="Mở khóa người dùng / enable a user (admin)")
def enable_user(
    request: Request, state: StateDep, scope: AdminScopeDep, store: UsersDep, name: UserNamePath
) -> UserOut:
    return UserOut.of(_change(request, state, scope, "user.enable", name, lambda: set_disabled(
        store, name=name, disabled=False, actor=scope.user, ip=client_ip(request))))


@router.post("/{name}/password", summary="Đặt mật khẩu / set a user's password (admin)")
def user_password(
    request: Request, state: StateDep, scope: AdminScopeDep, store: UsersDep, name: UserNamePath,
    body: PasswordIn,
) -> UserOut:
    """The user's tokens (and sessions' refresh tokens) stop working: they log in again."""
    return UserOut.of(_change(request, state, scope, "user.passwd", name, lambda: set_password(
        store, state.passwords, name=name, password=body.password, actor=scope.user,
        ip=client_ip(request))))


def _change(request: Request, state: AppState, scope: Scope, action: str, name: str,
            run: Callable[[], UserRecord]) -> UserRecord:
    """``run`` (a store function that audits its own success), its refusals as API errors
    (audited as failed), and this process's remembered row of the user dropped."""
    try:
        user = run()
    except UserExists:
        _failed(request, state, scope, action, name, "exists")
        raise ApiError(409, "user_exists", name=name) from None
    except UnknownUser:  # a store function that does not translate it
        _failed(request, state, scope, action, name, "unknown user")
        raise ApiError(404, "user_not_found", name=name) from None
    except UserAdminError as exc:
        _failed(request, state, scope, action, name, exc.code)
        error = ApiError(404 if exc.code == "user_not_found" else 422, exc.code)
        error.params = dict(exc.params)
        raise error from None
    except PasswordPolicyError:
        _failed(request, state, scope, action, name, "password policy")
        raise ApiError(422, "password_policy", min=MIN_PASSWORD_CHARS) from None
    state.users.forget(name)
    return user


def _failed(request: Request, state: AppState, scope: Scope, action: str, name: str, why: str) -> None:
    state.audit(request, actor=scope.user, action=action, outcome="failed", target=f"user:{name}", detail=why)
