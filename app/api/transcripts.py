"""POST/GET /v1/transcripts."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Query, Response, status

from app.api.deps import AUTH_RESPONSES, IngestKey, QueueDep, ReadKey, SessionDep, SettingsDep
from app.api.errors import PayloadTooLargeError
from app.api.views import transcript_read
from app.db import repositories as repo
from app.ingest.errors import NotFoundError
from app.ingest.service import limit_errors, submit_transcript
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
    problems = limit_errors(data, settings.api.max_text_chars)
    if problems:
        raise PayloadTooLargeError("; ".join(problems))
    transcript, created = submit_transcript(session, data, queue)
    if not created:
        response.status_code = status.HTTP_200_OK
    return transcript_read(session, transcript)


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
    transcript = repo.find_transcript(session, source, external_id)
    if transcript is None:
        raise NotFoundError(f"no transcript with source {source!r} and external_id {external_id!r}")
    return transcript_read(session, transcript)


@router.get(
    "/{transcript_id}",
    response_model=TranscriptRead,
    dependencies=[ReadKey],
    responses={**AUTH_RESPONSES, 404: {"model": Problem}, 422: {"model": Problem}},
)
def get_transcript(transcript_id: uuid.UUID, session: SessionDep) -> TranscriptRead:
    transcript = repo.get_transcript(session, transcript_id)
    if transcript is None:
        raise NotFoundError(f"no transcript {transcript_id}")
    return transcript_read(session, transcript)
