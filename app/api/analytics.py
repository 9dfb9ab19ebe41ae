"""GET /v1/analytics/*: counts per reason over time, top products."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import JSONResponse

from app.api.deps import AUTH_RESPONSES, ReadKey, SessionDep, SettingsDep
from app.db import repositories as repo
from schemas.api import (
    NO_CONTROL_CHARS,
    Bucket,
    Problem,
    ProductCount,
    ProductCounts,
    ReasonCounts,
    UtcDatetime,
)

router = APIRouter(prefix="/v1/analytics", tags=["analytics"])
RESPONSES: dict[int | str, dict[str, Any]] = {**AUTH_RESPONSES, 422: {"model": Problem}}


def _as_datetime(value: object) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    return datetime.fromisoformat(str(value))


def _utc_iso(value: datetime) -> str:
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.isoformat().replace("+00:00", "Z")


def _check_range(since: datetime | None, until: datetime | None) -> None:
    if since is not None and until is not None and since >= until:
        raise HTTPException(422, "since must be before until")


@router.get("/reasons", response_model=ReasonCounts, dependencies=[ReadKey], responses=RESPONSES)
def reasons(
    session: SessionDep,
    bucket: Bucket = "day",
    since: Annotated[UtcDatetime | None, Query()] = None,
    until: Annotated[UtcDatetime | None, Query()] = None,
) -> JSONResponse:
    """Calls per reason per day, week (from Monday) or month, by the time of the call (UTC)."""
    _check_range(since, until)
    rows = repo.reason_counts(session, bucket, since, until)
    # A year of days is thousands of items: built once as plain JSON (the shape of
    # ReasonCounts, which documents it) rather than validated twice as models.
    items = [{"bucket": _utc_iso(_as_datetime(b)), "reason": r, "count": c} for b, r, c in rows]
    return JSONResponse({"bucket": bucket, "items": items})


@router.get("/products", response_model=ProductCounts, dependencies=[ReadKey], responses=RESPONSES)
def products(
    session: SessionDep,
    settings: SettingsDep,
    reason: Annotated[str | None, Query(max_length=40, pattern=NO_CONTROL_CHARS)] = None,
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
