"""Commands to devices (street lights, pumps, valves)."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StringConstraints

from contract.bounds import MAX_INT, text_problem
from ops_center.adapters.commands import CommandRecord
from ops_center.api.schemas.common import InModel, OutModel, PageModel, safe_text

# --- commands ----------------------------------------------------------------------------------

ArgValue = bool | int | float | str | None
ARG_TEXT_MAX = 256


def _check_arg(value: ArgValue) -> ArgValue:
    """A command argument, bounded like every payload the platform publishes (it goes out over
    MQTT): integers within 0 … 2^63−1, finite floats, safe text of at most ARG_TEXT_MAX."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        if not 0 <= value <= MAX_INT:
            raise ValueError(f"integer outside 0 … {MAX_INT}")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("number is not finite")
    else:
        problem = text_problem(value, ARG_TEXT_MAX)
        if problem is not None:
            raise ValueError(problem)
    return value


ArgIn = Annotated[ArgValue, AfterValidator(_check_arg)]
ArgName = Annotated[str, StringConstraints(min_length=1, max_length=64), safe_text(64)]
CommandStateOut = Literal["pending", "applied", "failed", "expired"]


class CommandIn(InModel):
    sensor: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$", description="mã cảm biến / sensor id")
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$", description="lệnh / command, e.g. set_lamp")
    args: dict[ArgName, ArgIn] = Field(
        default_factory=dict, max_length=16, description='e.g. {"on": true, "dim_pct": 60} or {"auto": true}'
    )
    ttl_s: int = Field(default=300, ge=10, le=3600, description="hết hạn sau / expires after (s)")


class CommandOut(OutModel):
    id: str
    site: str
    gateway: str
    sensor: str
    name: str
    args: dict[str, ArgValue]
    state: CommandStateOut
    created_by: str
    created_at: datetime
    expires_at: datetime
    result_at: datetime | None
    detail: str | None

    @classmethod
    def of(cls, c: CommandRecord) -> CommandOut:
        return cls.model_validate(c)


class CommandPage(PageModel):
    items: list[CommandOut]
