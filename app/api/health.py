"""/healthz: the process is up. /readyz: the database and the broker answer."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from app.db.session import ping
from schemas.api import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    return Health(status="ok")


def _check_database(request: Request) -> str:
    try:
        ping(request.app.state.engine)
    except Exception as exc:  # any failure means not ready; say which kind
        return f"unavailable: {type(exc).__name__}"
    return "ok"


def _check_broker(request: Request) -> str:
    try:
        request.app.state.queue.ping()
    except Exception as exc:
        return f"unavailable: {type(exc).__name__}"
    return "ok"


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(request: Request) -> JSONResponse:
    checks = {
        "database": await run_in_threadpool(_check_database, request),
        "broker": await run_in_threadpool(_check_broker, request),
    }
    ready = all(value == "ok" for value in checks.values())
    health = Health(status="ok" if ready else "unavailable", checks=checks)
    return JSONResponse(status_code=200 if ready else 503, content=health.model_dump())
