"""GET /v1/extractions: current results, filtered, keyset-paginated."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import AUTH_RESPONSES, PageSizeDep, ReadKey, SessionDep
from app.results import service as results
from schemas.api import NO_CONTROL_CHARS, ExtractionPage, Problem, UtcDatetime

router = APIRouter(prefix="/v1/extractions", tags=["results"])


@router.get(
    "",
    response_model=ExtractionPage,
    dependencies=[ReadKey],
    responses={**AUTH_RESPONSES, 422: {"model": Problem}},
)
def list_extractions(
    session: SessionDep,
    page_size: PageSizeDep,
    reason: Annotated[str | None, Query(max_length=40, pattern=NO_CONTROL_CHARS)] = None,
    product: Annotated[
        str | None,
        Query(
            max_length=200,
            pattern=NO_CONTROL_CHARS,
            description="Case- and accent-insensitive exact match.",
        ),
    ] = None,
    since: Annotated[UtcDatetime | None, Query(description="Calls at or after (ISO 8601).")] = None,
    until: Annotated[UtcDatetime | None, Query(description="Calls before (ISO 8601).")] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> ExtractionPage:
    """Current extractions, newest call first. Pass `next_cursor` back as `cursor` for more."""
    return results.list_extractions(
        session,
        reason=reason,
        product=product,
        since=since,
        until=until,
        page_size=page_size,
        cursor=cursor,
    )
