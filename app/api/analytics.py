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
    TopSizeDep,
    UntilQuery,
)
from app.results import service as results
from schemas.api import (
    NO_CONTROL_CHARS,
    Bucket,
    Problem,
    ProductCounts,
    ReasonCounts,
    SourceName,
)

router = APIRouter(prefix="/v1/analytics", tags=["analytics"])
RESPONSES: dict[int | str, dict[str, Any]] = {**AUTH_RESPONSES, 422: {"model": Problem}}
SourceQuery = Annotated[
    SourceName | None,
    Query(
        min_length=1,
        max_length=100,
        pattern=NO_CONTROL_CHARS,
        description="Only the calls of this source, normalised as when submitted (`CRM`: `crm`).",
    ),
]
TaxonomyVersionQuery = Annotated[
    str | None,
    Query(
        max_length=64,
        pattern=NO_CONTROL_CHARS,
        description="Only the calls extracted with this taxonomy version (counts of different "
        "taxonomies do not mean the same thing).",
    ),
]


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
