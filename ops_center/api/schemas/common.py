"""What every API model shares: the bounds every request text, time and integer is checked
against, and the base classes of answers (frozen), requests (no unknown field) and pages."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from contract.bounds import MAX_INT, text_problem, time_problem

# --- bounds (docs/contract.md "Additions → Bounds and text", contract/bounds.py) ----------------------
# Every text a request carries is checked here, before any route sees it: no control character
# but tab and newline (NUL never), at most its length; every time representable in UTC and
# within [MIN_TIME, MAX_TIME); every integer within 0 … 2^63−1. Outside: 422, never a 500 from
# the store (PostgreSQL refuses NUL in text; Python cannot convert year 9999 at −23:59 to UTC).


def safe_text(max_length: int) -> AfterValidator:
    def check(value: str) -> str:
        problem = text_problem(value, max_length)
        if problem is not None:
            raise ValueError(problem)
        return value

    return AfterValidator(check)


def _check_time(value: datetime) -> datetime:
    problem = time_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


Time = Annotated[AwareDatetime, AfterValidator(_check_time)]
"""A body's time: with an offset, representable, within [MIN_TIME, MAX_TIME)."""
QueryTime = Annotated[datetime, AfterValidator(_check_time)]
"""A query's time (the routes say which are required): as ``Time``."""
BoundedInt = Annotated[int, Field(ge=0, le=MAX_INT)]

USER_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
UserName = Annotated[str, Field(pattern=USER_NAME_PATTERN)]
NOTE_MAX = 2000
Note = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=NOTE_MAX), safe_text(NOTE_MAX)
]
OptionalNote = Annotated[str, Field(max_length=NOTE_MAX), safe_text(NOTE_MAX)]
Severity = Literal["info", "warning", "critical", "emergency"]


class OutModel(BaseModel):
    # from_attributes: an answer reads the record it shows by attribute name
    # (``Model.model_validate(record)``), one shape to keep in step, not a copy per field.
    model_config = ConfigDict(frozen=True, from_attributes=True)


class InModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PageModel(OutModel):
    total: int
    limit: int
    offset: int
