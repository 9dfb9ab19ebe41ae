"""Rows and outcomes for tests that need stored calls without going through the API."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, create_engine, text

from app.db.models import Transcript
from app.db.session import build_sessionmaker
from app.extraction.pipeline import ExtractionOutcome


def add_transcripts(
    engine: Engine, n: int, start: datetime = datetime(2026, 3, 1, 9, tzinfo=UTC), every_s: int = 0
) -> list[uuid.UUID]:
    """`n` queued transcripts, the first at `start`, one every `every_s` seconds."""
    sessions = build_sessionmaker(engine)
    ids = [uuid.uuid4() for _ in range(n)]
    with sessions.begin() as session:
        session.add_all(
            Transcript(
                id=transcript_id,
                source="test",
                external_id=str(transcript_id),
                text=f"Client: my router {i} is broken",
                text_sha256="0" * 64,
                occurred_at=start + timedelta(seconds=every_s * i),
                queue="batch",
            )
            for i, transcript_id in enumerate(ids)
        )
    return ids


def succeeded_outcome(product: str = "Router") -> ExtractionOutcome:
    """A succeeded extraction of `product` as a breakdown."""
    return ExtractionOutcome(
        status="succeeded",
        product=product,
        reason="breakdown",
        confidence=None,
        backend="test",
        model="test",
        prompt_version="p",
        taxonomy_version="t",
        latency_ms=1,
        prompt_tokens=None,
        completion_tokens=None,
        attempts=1,
        truncated=False,
    )


def stored_counts(database_url: str) -> dict[str, int]:
    """Transcripts per status, extraction rows, and transcripts with more than one current."""
    engine = create_engine(database_url)
    with engine.connect() as connection:
        by_status = dict(
            connection.execute(
                text("SELECT status, count(*) FROM transcripts GROUP BY status")
            ).all()
        )
        rows = connection.execute(text("SELECT count(*) FROM extractions")).scalar_one()
        current_dupes = connection.execute(
            text(
                "SELECT count(*) FROM (SELECT transcript_id FROM extractions WHERE is_current "
                "GROUP BY transcript_id HAVING count(*) > 1) d"
            )
        ).scalar_one()
        per_transcript_dupes = connection.execute(
            text(
                "SELECT count(*) FROM (SELECT transcript_id FROM extractions "
                "GROUP BY transcript_id HAVING count(*) > 1) d"
            )
        ).scalar_one()
    engine.dispose()
    return {
        **by_status,
        "extraction_rows": rows,
        "current_dupes": current_dupes,
        "multi_attempts": per_transcript_dupes,
    }
