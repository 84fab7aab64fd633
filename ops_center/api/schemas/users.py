"""Login, the signed-in user, and users (admin)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from ops_center.adapters.records import UserRecord
from ops_center.api.schemas.common import InModel, OutModel, PageModel, UserName, safe_text
from ops_center.domain.roles import Role

# --- auth -------------------------------------------------------------------------------------


class TokenOut(OutModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    refresh_token: str


TokenText = Annotated[str, Field(min_length=1, max_length=4096), safe_text(4096)]


class RefreshIn(InModel):
    refresh_token: TokenText


class LogoutOut(OutModel):
    revoked: bool = Field(description="phiên đã bị thu hồi / the session was live and is now revoked")


class StreamTicketOut(OutModel):
    ticket: str = Field(description="GET /api/v1/stream?ticket=… — single use")
    expires_in: int = Field(description="seconds")


class MeOut(OutModel):
    name: str
    role: Role
    sites: list[str]
    permissions: list[str]


# --- users (admin) ------------------------------------------------------------------------------

PASSWORD_MIN = 10  # ops_center/security/passwords.py MIN_PASSWORD_CHARS (a test holds them equal)
PASSWORD_MAX = 256  # Argon2 takes any length: bounded so that hashing one costs what it should
Password = Annotated[
    str,
    Field(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX, description="no leading or trailing spaces"),
    safe_text(PASSWORD_MAX),
]
SiteId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$", max_length=63)]


class UserIn(InModel):
    name: Annotated[UserName, Field(max_length=64)]
    role: Role
    sites: list[SiteId] = Field(
        default_factory=list, max_length=64, description="ward_staff, cluster_manager: at least one"
    )
    password: Password


class PasswordIn(InModel):
    password: Password


class UserOut(OutModel):
    name: str
    role: Role
    sites: list[str]
    disabled: bool
    created: datetime | None = Field(validation_alias="created_at")
    updated: datetime | None = Field(validation_alias="updated_at")

    @classmethod
    def of(cls, u: UserRecord) -> UserOut:
        return cls.model_validate(u)


class UserPage(PageModel):
    items: list[UserOut]
