"""``/healthz`` (liveness), ``/readyz`` (readiness: store and broker, from the readiness
callable the composition root injects), ``/metrics`` (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ops_center.api.deps import StateDep
from ops_center.api.schemas import HealthOut, ReadyOut

router = APIRouter(tags=["ops"])


@router.get("/healthz", summary="Liveness")
def healthz() -> HealthOut:
    return HealthOut()


@router.get(
    "/readyz",
    summary="Readiness (store + broker)",
    response_model=ReadyOut,
    responses={503: {"model": ReadyOut, "description": "not ready"}},
)
async def readyz(state: StateDep) -> JSONResponse:
    try:
        checks = dict(await run_in_threadpool(state.readiness))
    except Exception:  # a failing check is a red check, not a 500
        checks = {"readiness": False}
    body = ReadyOut(ready=all(checks.values()) and bool(checks), checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def metrics(state: StateDep) -> Response:
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
