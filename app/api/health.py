"""/healthz: the process is up. /readyz: the database and the broker answer, and a live worker
serves every queue and every call waiting in it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from app.db.session import ping
from app.jobs.workers import queue_status
from schemas.api import Health, QueueHealth, WorkerRead

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, response_model_exclude_none=True)
def healthz() -> Health:
    """The process is up (nothing else is checked)."""
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


def _check_queues(request: Request) -> dict[str, QueueHealth]:
    state = request.app.state
    queues = [state.queue.interactive, state.queue.batch]
    with state.sessions() as session:
        statuses = queue_status(session, queues, state.settings.broker.heartbeat_interval_s)
    return {
        s.queue: QueueHealth(
            workers=[WorkerRead(**vars(w)) for w in s.workers],
            waiting=s.waiting,
            unserved=s.unserved,
        )
        for s in statuses
    }


@router.get(
    "/readyz",
    response_model=Health,
    response_model_exclude_none=True,
    responses={503: {"model": Health, "description": "A check failed: `checks` says which."}},
)
async def readyz(
    request: Request,
    workers: Annotated[
        bool,
        Query(
            description="Also require a live worker on every queue, able to take every call "
            "waiting in it (false: the API's own dependencies only, e.g. for a load "
            "balancer's probe of API replicas).",
        ),
    ] = True,
) -> JSONResponse:
    """Ready when the database and the broker answer and (unless `workers=false`) every queue
    has a live worker that can take the calls waiting in it; 503 otherwise, saying what."""
    checks = {
        "database": await run_in_threadpool(_check_database, request),
        "broker": await run_in_threadpool(_check_broker, request),
    }
    queues = None
    if workers:
        if checks["database"] == "ok":
            queues = await run_in_threadpool(_check_queues, request)
            for name, queue in queues.items():
                checks[f"queue:{name}"] = _queue_problem(queue) or "ok"
        else:
            checks["queues"] = "unknown: the database is unavailable"
    ready = all(value == "ok" for value in checks.values())
    health = Health(status="ok" if ready else "unavailable", checks=checks, queues=queues)
    return JSONResponse(
        status_code=200 if ready else 503, content=health.model_dump(mode="json", exclude_none=True)
    )


def _queue_problem(queue: QueueHealth) -> str | None:
    if not queue.workers:
        return f"no live worker ({queue.waiting} calls waiting)"
    if queue.unserved:
        listed = ", ".join(f"{n} for taxonomy {v!r}" for v, n in sorted(queue.unserved.items()))
        return f"calls no live worker can take: {listed}"
    return None
