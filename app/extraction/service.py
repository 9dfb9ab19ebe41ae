"""run_extraction(): claim a transcript, run the pipeline, store the outcome. Idempotent."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from app import metrics
from app.db import repositories as repo
from app.db.models import Extraction
from app.db.session import session_scope
from app.extraction.pipeline import ExtractionOutcome
from schemas.extraction import product_key

log = logging.getLogger(__name__)

Extractor = Callable[[str], ExtractionOutcome]


def run_extraction(
    sessions: sessionmaker[Session],
    transcript_id: uuid.UUID,
    extractor: Extractor,
    *,
    lease_s: int,
) -> str:
    """Extract one transcript and store the result; returns what happened.

    The model call happens between two short transactions, never inside one: the first claims
    the transcript (skipped if finished or leased by another worker), the second stores the
    outcome only if our claim still holds. A redelivered task therefore does nothing.
    """
    token = uuid.uuid4()
    with session_scope(sessions) as session:
        now = datetime.now(UTC)
        if not repo.claim_transcript(
            session, transcript_id, token, now, now + timedelta(seconds=lease_s)
        ):
            log.info(
                "transcript not claimable, skipping", extra={"transcript_id": str(transcript_id)}
            )
            metrics.SKIPPED.labels("not_claimable").inc()
            return "skipped"
        transcript = repo.get_transcript(session, transcript_id)
        assert transcript is not None
        text, occurred_at = transcript.text, transcript.occurred_at

    outcome = extractor(text)

    with session_scope(sessions) as session:
        if not repo.finish_transcript(
            session, transcript_id, token, outcome.status, datetime.now(UTC)
        ):
            log.warning(
                "lease lost before the result was stored",
                extra={"transcript_id": str(transcript_id)},
            )
            metrics.SKIPPED.labels("lease_lost").inc()
            return "lease_lost"
        repo.add_current_extraction(session, _extraction_row(transcript_id, occurred_at, outcome))
    metrics.record_outcome(outcome)
    log.info(
        "extraction stored",
        extra={
            "transcript_id": str(transcript_id),
            "status": outcome.status,
            "latency_ms": outcome.latency_ms,
            "error_kind": outcome.error_kind,
        },
    )
    return outcome.status


def _extraction_row(
    transcript_id: uuid.UUID, occurred_at: datetime, outcome: ExtractionOutcome
) -> Extraction:
    values = asdict(outcome)
    return Extraction(
        transcript_id=transcript_id,
        occurred_at=occurred_at,
        product_key=product_key(outcome.product),
        **values,
    )
