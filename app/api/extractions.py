"""GET /v1/extractions: current results, filtered, keyset-paginated."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from app.api.deps import (
    AUTH_RESPONSES,
    PageSizeDep,
    ReadKey,
    ReasonFilterDep,
    SessionDep,
    SinceQuery,
    UntilQuery,
)
from app.results import service as results
from schemas.api import NO_CONTROL_CHARS, ExtractionPage, Problem, SourceName

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
    reason: ReasonFilterDep,
    product: Annotated[
        str | None,
        Query(
            max_length=200,
            pattern=NO_CONTROL_CHARS,
            description="Case- and accent-insensitive exact match.",
            examples=["Livebox 6"],
        ),
    ] = None,
    since: SinceQuery = None,
    until: UntilQuery = None,
    batch_id: Annotated[
        uuid.UUID | None, Query(description="The calls of one batch (POST /v1/batches' id).")
    ] = None,
    source: Annotated[
        SourceName | None,
        Query(
            min_length=1,
            max_length=100,
            pattern=NO_CONTROL_CHARS,
            description="Exact match, normalised as when submitted (`CRM` is `crm`).",
        ),
    ] = None,
    language: Annotated[
        str | None,
        Query(
            pattern=r"^[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,8})?$",
            description="As submitted, case-insensitive (e.g. fr).",
        ),
    ] = None,
    status: Annotated[
        Literal["succeeded", "failed"] | None, Query(description="The extraction's status.")
    ] = None,
    min_confidence: Annotated[
        float | None, Query(ge=0, le=1, description="Confidence at least this.")
    ] = None,
    max_confidence: Annotated[
        float | None, Query(ge=0, le=1, description="Confidence at most this.")
    ] = None,
    taxonomy_version: Annotated[
        str | None,
        Query(max_length=64, pattern=NO_CONTROL_CHARS, description="Extracted with this taxonomy."),
    ] = None,
    review: Annotated[
        Literal["waiting", "labelled", "auto", "audit", "audit_reviewed"] | None,
        Query(
            description="The call's place in the review loop: waiting for a person, labelled "
            "by one, accepted without one, drawn into the audit sample, or drawn and labelled "
            "(the calls /v1/quality counts)."
        ),
    ] = None,
    cursor: Annotated[
        str | None,
        Query(max_length=200, description="The previous page's `next_cursor`, for the next page."),
    ] = None,
) -> ExtractionPage:
    """Current extractions, newest call first, with each call's metadata. Pass `next_cursor`
    back as `cursor` for more. A confidence range leaves out calls without a confidence."""
    filters = results.ExtractionFilter(
        reason=reason,
        product=product,
        since=since,
        until=until,
        batch_id=batch_id,
        source=source,
        language=language,
        status=status,
        min_confidence=min_confidence,
        max_confidence=max_confidence,
        taxonomy_version=taxonomy_version,
        review=review,
    )
    return results.list_extractions(session, filters, page_size=page_size, cursor=cursor)
