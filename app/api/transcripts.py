"""POST/GET /v1/transcripts."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Path, Query, Response, status
from fastapi.openapi.models import Example

from app.api.deps import (
    AUTH_RESPONSES,
    IngestKey,
    QueueDep,
    ReadKey,
    SessionDep,
    SettingsDep,
    TaxonomyDep,
)
from app.ingest.service import submit_transcript
from app.results import service as results
from schemas.api import (
    NO_CONTROL_CHARS,
    TRANSCRIPT_EXAMPLE,
    TRANSCRIPT_EXAMPLE_EN,
    Problem,
    SourceName,
    TranscriptCreate,
    TranscriptRead,
)

router = APIRouter(prefix="/v1/transcripts", tags=["transcripts"])

_TRANSCRIPT_EXAMPLES: dict[str, Example] = {
    "french": {"summary": "A call in French, with its metadata", "value": TRANSCRIPT_EXAMPLE},
    "english": {"summary": "A call in English, received now", "value": TRANSCRIPT_EXAMPLE_EN},
}


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TranscriptRead,
    dependencies=[IngestKey],
    responses={
        **AUTH_RESPONSES,
        200: {"model": TranscriptRead, "description": "Already submitted with the same text."},
        400: {"model": Problem, "description": "The body could not be read (not UTF-8)."},
        409: {"model": Problem, "description": "Same external_id, different text."},
        413: {"model": Problem, "description": "Body, text or metadata over its limit."},
        422: {"model": Problem},
    },
)
def create_transcript(
    data: Annotated[TranscriptCreate, Body(openapi_examples=_TRANSCRIPT_EXAMPLES)],
    response: Response,
    session: SessionDep,
    queue: QueueDep,
    settings: SettingsDep,
    taxonomy: TaxonomyDep,
) -> TranscriptRead:
    """Queue one transcript for extraction (the `interactive` queue)."""
    transcript, created = submit_transcript(
        session,
        data,
        queue,
        settings.api.max_text_chars,
        taxonomy_version=taxonomy.version,
        max_metadata_bytes=settings.api.max_metadata_bytes,
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return results.transcript_view(session, transcript)


@router.get(
    "",
    response_model=TranscriptRead,
    dependencies=[ReadKey],
    responses={**AUTH_RESPONSES, 404: {"model": Problem}, 422: {"model": Problem}},
)
def find_transcript(
    session: SessionDep,
    external_id: Annotated[
        str,
        Query(
            min_length=1,
            max_length=200,
            pattern=NO_CONTROL_CHARS,
            description="The call-centre system's id of the call.",
            examples=["call-0001"],
        ),
    ],
    source: Annotated[
        SourceName,
        Query(
            min_length=1,
            max_length=100,
            pattern=NO_CONTROL_CHARS,
            description="The system the call came from, normalised as when submitted "
            "(`CRM` finds `crm`).",
            examples=["crm"],
        ),
    ] = "default",
) -> TranscriptRead:
    """The transcript a call-centre system knows by (source, external_id)."""
    return results.find_transcript(session, source, external_id)


@router.get(
    "/{transcript_id}",
    response_model=TranscriptRead,
    dependencies=[ReadKey],
    responses={**AUTH_RESPONSES, 404: {"model": Problem}, 422: {"model": Problem}},
)
def get_transcript(
    transcript_id: Annotated[uuid.UUID, Path(description="callx's id of the call.")],
    session: SessionDep,
) -> TranscriptRead:
    """A call, with its current extraction once there is one."""
    return results.get_transcript(session, transcript_id)
