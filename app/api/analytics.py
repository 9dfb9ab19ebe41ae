"""GET /v1/analytics/*: counts per reason over time, top products."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from app.api.deps import (
    AUTH_RESPONSES,
    ReadKey,
    ReasonFilterDep,
    SessionDep,
    SinceQuery,
    SourceQuery,
    TaxonomyVersionQuery,
    TopSizeDep,
    UntilQuery,
)
from app.results import service as results
from schemas.api import Bucket, Problem, ProductCounts, ReasonCounts

router = APIRouter(prefix="/v1/analytics", tags=["analytics"])
RESPONSES: dict[int | str, dict[str, Any]] = {**AUTH_RESPONSES, 422: {"model": Problem}}


@router.get("/reasons", response_model=ReasonCounts, dependencies=[ReadKey], responses=RESPONSES)
def reasons(
    session: SessionDep,
    bucket: Annotated[
        Bucket, Query(description="Count per day, week (from Monday) or month, in UTC.")
    ] = "day",
    since: SinceQuery = None,
    until: UntilQuery = None,
    source: SourceQuery = None,
    taxonomy_version: TaxonomyVersionQuery = None,
) -> JSONResponse:
    """Calls per reason per day, week (from Monday) or month, by the time of the call (UTC)."""
    where = results.Slice(source=source, taxonomy_version=taxonomy_version)
    return JSONResponse(results.reason_counts(session, bucket, since, until, where))


@router.get("/products", response_model=ProductCounts, dependencies=[ReadKey], responses=RESPONSES)
def products(
    session: SessionDep,
    page_size: TopSizeDep,
    reason: ReasonFilterDep,
    since: SinceQuery = None,
    until: UntilQuery = None,
    source: SourceQuery = None,
    taxonomy_version: TaxonomyVersionQuery = None,
) -> ProductCounts:
    """The most frequent products (case- and accent-insensitive), with their calls per reason."""
    where = results.Slice(source=source, taxonomy_version=taxonomy_version)
    return results.product_counts(session, reason, since, until, page_size, where)
