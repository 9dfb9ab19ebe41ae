"""GET /v1/analytics/*: counts per reason over time, top products."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from app.api.deps import AUTH_RESPONSES, ReadKey, SessionDep, TopSizeDep
from app.results import service as results
from schemas.api import (
    NO_CONTROL_CHARS,
    Bucket,
    Problem,
    ProductCounts,
    ReasonCounts,
    UtcDatetime,
)

router = APIRouter(prefix="/v1/analytics", tags=["analytics"])
RESPONSES: dict[int | str, dict[str, Any]] = {**AUTH_RESPONSES, 422: {"model": Problem}}


@router.get("/reasons", response_model=ReasonCounts, dependencies=[ReadKey], responses=RESPONSES)
def reasons(
    session: SessionDep,
    bucket: Bucket = "day",
    since: Annotated[UtcDatetime | None, Query()] = None,
    until: Annotated[UtcDatetime | None, Query()] = None,
) -> JSONResponse:
    """Calls per reason per day, week (from Monday) or month, by the time of the call (UTC)."""
    return JSONResponse(results.reason_counts(session, bucket, since, until))


@router.get("/products", response_model=ProductCounts, dependencies=[ReadKey], responses=RESPONSES)
def products(
    session: SessionDep,
    page_size: TopSizeDep,
    reason: Annotated[str | None, Query(max_length=40, pattern=NO_CONTROL_CHARS)] = None,
    since: Annotated[UtcDatetime | None, Query()] = None,
    until: Annotated[UtcDatetime | None, Query()] = None,
) -> ProductCounts:
    """The most frequent products (case- and accent-insensitive), with their calls per reason."""
    return results.product_counts(session, reason, since, until, page_size)
