"""POST /v1/reextractions (admin): extract stored calls again; GET /v1/reextractions/{id}:
its progress."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Response, status

from app.api.deps import (
    AUTH_RESPONSES,
    Caller,
    QueueDep,
    ReadKey,
    SessionDep,
    SettingsDep,
    TaxonomyDep,
    reason_filter,
    require_scope,
)
from app.jobs import reextract
from app.registry.follow import workers_model
from schemas.api import Problem
from schemas.reextractions import ReextractionCreate, ReextractionRead

router = APIRouter(prefix="/v1/reextractions", tags=["reextractions"])
AdminDep = Annotated[Caller | None, Depends(require_scope("admin"))]
RESPONSES: dict[int | str, dict[str, Any]] = {**AUTH_RESPONSES, 422: {"model": Problem}}
# The routes with a body: it may not be readable.
BODY_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "The body could not be read (not UTF-8)."}
}


def _read(state: reextract.ReextractionState) -> ReextractionRead:
    job = state.job
    return ReextractionRead(
        id=job.id,
        created=state.created,
        filters=job.filters,
        taxonomy_version=job.taxonomy_version,
        model=job.model,
        calls=job.calls,
        done=state.done,
        queued=state.queued,
        running=state.running,
        finished=state.finished,
        created_by=job.created_by,
        created_at=job.created_at,
    )


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ReextractionRead,
    responses={
        **RESPONSES,
        **BODY_RESPONSES,
        200: {"model": ReextractionRead, "description": "The same job was already there."},
    },
)
def create(
    data: Annotated[
        ReextractionCreate,
        Body(
            openapi_examples={
                "unsure": {
                    "summary": "The unsure calls of November",
                    "value": {
                        "since": "2026-11-01T00:00:00Z",
                        "until": "2026-12-01T00:00:00Z",
                        "max_confidence": 0.9,
                    },
                },
                "taxonomy": {
                    "summary": "A month of calls in the new taxonomy version",
                    "value": {"since": "2026-11-05T00:00:00Z", "limit": 100000},
                },
            }
        ),
    ],
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    queue: QueueDep,
    taxonomy: TaxonomyDep,
    caller: AdminDep,
) -> ReextractionRead:
    """Extract the stored calls of the filter again, on the batch queue, with the model the
    workers run now and this API's taxonomy. Earlier extractions are kept (not current);
    people's labels stay the answer. The same filter again (same taxonomy and model): the
    job already made, 200, nothing extracted twice."""
    reason_filter(taxonomy, data.reason)  # a 422 listing the codes
    state = reextract.create_reextraction(
        session,
        queue,
        reextract.ReextractionFilter(**data.model_dump()),
        taxonomy_version=taxonomy.version,
        model=workers_model(session, settings, taxonomy.version),
        by="api:local" if caller is None else f"api:{caller.name or caller.key_id}",
    )
    if not state.created:
        response.status_code = status.HTTP_200_OK
    return _read(state)


@router.get(
    "/{reextraction_id}",
    response_model=ReextractionRead,
    dependencies=[ReadKey],
    responses={**RESPONSES, 404: {"model": Problem}},
)
def get(
    reextraction_id: Annotated[uuid.UUID, Path(description="The job's id.")],
    session: SessionDep,
) -> ReextractionRead:
    """A job's progress: its calls done, queued and running."""
    return _read(reextract.get_state(session, reextraction_id))
