"""ORM rows to response schemas."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.db import repositories as repo
from app.db.models import Extraction, Transcript
from schemas.api import ExtractionRead, TranscriptRead


def extraction_read(extraction: Extraction | None) -> ExtractionRead | None:
    return None if extraction is None else ExtractionRead.model_validate(extraction)


def transcript_read(
    session: Session, transcript: Transcript, extraction: Extraction | None = None
) -> TranscriptRead:
    if extraction is None and transcript.status in ("succeeded", "failed"):
        extraction = repo.current_extraction(session, transcript.id)
    return TranscriptRead(
        id=transcript.id,
        external_id=transcript.external_id,
        source=transcript.source,
        status=transcript.status,  # type: ignore[arg-type]
        language=transcript.language,
        occurred_at=transcript.occurred_at,
        batch_id=transcript.batch_id,
        extraction=extraction_read(extraction),
    )
