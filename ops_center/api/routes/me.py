"""``GET /api/v1/me``."""

from __future__ import annotations

from fastapi import APIRouter

from ops_center.api.deps import PrincipalDep
from ops_center.api.errors import ERROR_RESPONSES
from ops_center.api.schemas import MeOut
from ops_center.domain.roles import PERMISSIONS

router = APIRouter(tags=["me"], responses=ERROR_RESPONSES)


@router.get("/me", summary="Người dùng hiện tại / the current user")
def me(principal: PrincipalDep) -> MeOut:
    scope = principal.scope
    return MeOut(
        name=principal.user.name,
        role=scope.role,
        sites=sorted(scope.sites),
        permissions=sorted(a for a, roles in PERMISSIONS.items() if scope.role in roles),
    )
