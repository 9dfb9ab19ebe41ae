"""GET /v1/analytics/*: counts per reason over time, top products."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from app.api.deps import AUTH_RESPONSES, ReadKey, SessionDep, SettingsDep
from app.db import repositories as repo
from schemas.api import (
    Bucket,
    ProductCount,
    ProductCounts,
    ReasonBucket,
    ReasonCounts,
    UtcDatetime,
)

router = APIRouter(prefix="/v1/analytics", tags=["analytics"])


def _as_datetime(value: object) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    return datetime.fromisoformat(str(value))


def _check_range(since: datetime | None, until: datetime | None) -> None:
    if since is not None and until is not None and since >= until:
        raise HTTPException(422, "since must be before until")


@router.get(
    "/reasons", response_model=ReasonCounts, dependencies=[ReadKey], responses=AUTH_RESPONSES
)
def reasons(
    session: SessionDep,
    bucket: Bucket = "day",
    since: Annotated[UtcDatetime | None, Query()] = None,
    until: Annotated[UtcDatetime | None, Query()] = None,
) -> ReasonCounts:
    """Calls per reason per day, week (from Monday) or month, by the time of the call (UTC)."""
    _check_range(since, until)
    rows = repo.reason_counts(session, bucket, since, until)
    return ReasonCounts(
        bucket=bucket,
        items=[ReasonBucket(bucket=_as_datetime(b), reason=r, count=c) for b, r, c in rows],
    )


@router.get(
    "/products", response_model=ProductCounts, dependencies=[ReadKey], responses=AUTH_RESPONSES
)
def products(
    session: SessionDep,
    settings: SettingsDep,
    reason: Annotated[str | None, Query(max_length=40)] = None,
    since: Annotated[UtcDatetime | None, Query()] = None,
    until: Annotated[UtcDatetime | None, Query()] = None,
    limit: Annotated[int, Query(ge=1)] = 20,
) -> ProductCounts:
    """The most frequent products (case- and accent-insensitive), with their calls per reason."""
    _check_range(since, until)
    if limit > settings.api.max_page_size:
        raise HTTPException(422, f"limit {limit} is over the maximum {settings.api.max_page_size}")
    rows = repo.product_counts(session, reason, since, until, limit)
    return ProductCounts(items=[ProductCount(product=p, total=t, by_reason=r) for p, t, r in rows])
