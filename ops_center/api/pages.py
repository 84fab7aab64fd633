"""Pagination: ``limit`` (at most ``PAGE_SIZE_MAX``) and ``offset`` (at most ``OFFSET_MAX``).

Fixed caps, stated in the OpenAPI schema itself, so a client (and a schema-driven fuzzer)
knows them; anything beyond is a 422 before any query runs (docs/reliability.md S8)."""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import Query

PAGE_SIZE_MAX: Final = 200
OFFSET_MAX: Final = 100_000

Limit = Annotated[int, Query(ge=1, le=PAGE_SIZE_MAX, description="page size")]
Offset = Annotated[int, Query(ge=0, le=OFFSET_MAX)]
