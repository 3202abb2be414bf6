"""/healthz, /readyz and /metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from hexahub import __version__
from hexahub.core.deps import RuntimeDep
from hexahub.core.metrics import render_latest

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok", "version": __version__}


@router.get(
    "/readyz",
    summary="Database, Redis and broker are reachable",
    responses={503: {"description": "A dependency is unreachable; `checks` says which"}},
)
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    results = await runtime.check_readiness()
    ready = all(result.ok for result in results)
    body = {
        "status": "ready" if ready else "not_ready",
        "checks": {
            r.name: {"ok": r.ok, "detail": r.detail, "elapsed_ms": round(r.elapsed_ms, 1)}
            for r in results
        },
    }
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def metrics(runtime: RuntimeDep) -> Response:
    if not runtime.settings.metrics_enabled:
        return JSONResponse(
            {
                "error": {
                    "code": "not_found",
                    "message": "metrics are turned off (HEXAHUB_METRICS_ENABLED=false)",
                }
            },
            status_code=404,
        )
    payload, content_type = render_latest()
    return Response(payload, media_type=content_type)
