"""The review loop: GET /v1/review (the queue), PUT /v1/transcripts/{id}/label, GET
/v1/transcripts/{id}/labels (history), GET /v1/quality (production accuracy)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query
from fastapi.openapi.models import Example

from app.api.deps import (
    AUTH_RESPONSES,
    PageSizeDep,
    ReadKey,
    ReasonFilterDep,
    ReviewerDep,
    SessionDep,
    SinceQuery,
    SourceQuery,
    TaxonomyDep,
    TaxonomyVersionQuery,
    UntilQuery,
)
from app.review import service as review
from app.review.quality import QualityFilter, quality_report
from schemas.api import NO_CONTROL_CHARS, LabelRead, Problem
from schemas.review import LabelHistory, LabelWrite, QualityAnswer, QualityQuery, ReviewPage

router = APIRouter(tags=["review"])
RESPONSES: dict[int | str, dict[str, Any]] = {**AUTH_RESPONSES, 422: {"model": Problem}}
TranscriptId = Annotated[uuid.UUID, Path(description="callx's id of the call.")]
_LABEL_EXAMPLES: dict[str, Example] = {
    "first": {
        "summary": "The call's first label (it has none: version 0)",
        "value": {"reason": "billing", "product": "Forfait Sosh 100 Go", "version": 0},
    },
    "correction": {
        "summary": "A correction of label version 1, with a note",
        "value": {"reason": "other", "product": None, "note": "address change", "version": 1},
    },
}


@router.get("/v1/review", response_model=ReviewPage, responses=RESPONSES)
def review_queue(
    session: SessionDep,
    _caller: ReviewerDep,
    taxonomy: TaxonomyDep,
    page_size: PageSizeDep,
    reason: ReasonFilterDep,
    source: SourceQuery = None,
    since: SinceQuery = None,
    cursor: Annotated[
        str | None,
        Query(max_length=200, description="The previous page's `next_cursor`, for the next page."),
    ] = None,
) -> ReviewPage:
    """The calls that need a person: those drawn into the audit sample first (so that the
    unbiased figure of /v1/quality fills up), then failed calls and calls without a
    confidence, then the lowest confidence first: below the threshold or without a calibrated
    confidence, with the calls drawn for exploration (CALLX_REVIEW__EXPLORE_RATE) among them.
    Only calls extracted with this API's taxonomy (the ones it can label). A labelled call
    leaves the queue. `reason` is the model's."""
    filters = review.QueueFilter(
        source=source, reason=reason, since=since, taxonomy_version=taxonomy.version
    )
    return review.review_queue(session, filters, page_size=page_size, cursor=cursor)


@router.put(
    "/v1/transcripts/{transcript_id}/label",
    response_model=LabelRead,
    responses={
        **RESPONSES,
        400: {"model": Problem, "description": "The body could not be read (not UTF-8)."},
        404: {"model": Problem, "description": "No such call."},
        409: {
            "model": Problem,
            "description": "A newer label than `version` (another reviewer got there first), "
            "or a call not extracted yet or extracted with another taxonomy.",
        },
    },
)
def put_label(
    transcript_id: TranscriptId,
    data: Annotated[LabelWrite, Body(openapi_examples=_LABEL_EXAMPLES)],
    session: SessionDep,
    caller: ReviewerDep,
    taxonomy: TaxonomyDep,
) -> LabelRead:
    """Store a person's reason and product for a call: its new current label (earlier ones are
    kept as its history). The call's answer becomes the label's everywhere (reads, analytics,
    the call_extractions view); the model's answer stays as it was."""
    reviewer = (
        review.Reviewer("local")
        if caller is None
        else review.Reviewer(caller.name or caller.key_id, caller.key_id)
    )
    return review.write_label(session, transcript_id, data, reviewer, taxonomy)


@router.get(
    "/v1/transcripts/{transcript_id}/labels",
    response_model=LabelHistory,
    dependencies=[ReadKey],
    responses={**RESPONSES, 404: {"model": Problem}},
)
def get_labels(transcript_id: TranscriptId, session: SessionDep) -> LabelHistory:
    """Every label of a call, oldest first, each with the model's answer it replaced."""
    return review.label_history(session, transcript_id)


@router.get(
    "/v1/quality", response_model=QualityAnswer, dependencies=[ReadKey], responses=RESPONSES
)
def quality(
    session: SessionDep,
    since: SinceQuery = None,
    until: UntilQuery = None,
    model: Annotated[
        str | None,
        Query(
            max_length=200,
            pattern=NO_CONTROL_CHARS,
            description="Only the answers of this model (as in an extraction's `model`, "
            "adapter included).",
        ),
    ] = None,
    taxonomy_version: TaxonomyVersionQuery = None,
    source: SourceQuery = None,
) -> QualityAnswer:
    """The model's accuracy in production: its answers against people's labels on the audit
    sample (drawn at random, whatever the confidence: unbiased), with 95% intervals, overall,
    per reason, per model and taxonomy version; the share of calls auto-accepted and their
    accuracy; and apart, the agreement on the low-confidence calls people reviewed (biased)."""
    query = QualityQuery(
        since=since, until=until, model=model, taxonomy_version=taxonomy_version, source=source
    )
    report = quality_report(session, QualityFilter(**query.model_dump()))
    return QualityAnswer(query=query, **dict(report))
