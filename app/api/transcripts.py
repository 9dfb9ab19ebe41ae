"""POST/GET /v1/transcripts."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Query, Response, status

from app.api.deps import AUTH_RESPONSES, IngestKey, QueueDep, ReadKey, SessionDep, SettingsDep
from app.ingest.service import submit_transcript
from app.results import service as results
from schemas.api import NO_CONTROL_CHARS, Problem, TranscriptCreate, TranscriptRead

router = APIRouter(prefix="/v1/transcripts", tags=["transcripts"])


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
        413: {"model": Problem},
        422: {"model": Problem},
    },
)
def create_transcript(
    data: TranscriptCreate,
    response: Response,
    session: SessionDep,
    queue: QueueDep,
    settings: SettingsDep,
) -> TranscriptRead:
    """Queue one transcript for extraction (the `interactive` queue)."""
    transcript, created = submit_transcript(session, data, queue, settings.api.max_text_chars)
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
    external_id: str = Query(min_length=1, max_length=200, pattern=NO_CONTROL_CHARS),
    source: str = Query(default="default", min_length=1, max_length=100, pattern=NO_CONTROL_CHARS),
) -> TranscriptRead:
    """The transcript a call-centre system knows by (source, external_id)."""
    return results.find_transcript(session, source, external_id)


@router.get(
    "/{transcript_id}",
    response_model=TranscriptRead,
    dependencies=[ReadKey],
    responses={**AUTH_RESPONSES, 404: {"model": Problem}, 422: {"model": Problem}},
)
def get_transcript(transcript_id: uuid.UUID, session: SessionDep) -> TranscriptRead:
    return results.get_transcript(session, transcript_id)
