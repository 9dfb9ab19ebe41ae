"""Re-extraction jobs: the calls they chose, and the calls put back in the queue. None of
these functions commits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from app.db.models import Extraction, Reextraction, ReextractionItem, Transcript
from app.db.results import ExtractionFilter, current_conditions


def find_by_key(session: Session, key: str) -> Reextraction | None:
    return session.scalars(select(Reextraction).where(Reextraction.key == key)).one_or_none()


def get(session: Session, job_id: uuid.UUID) -> Reextraction | None:
    return session.get(Reextraction, job_id)


def add(session: Session, job: Reextraction) -> None:
    session.add(job)
    session.flush()


def choose_calls(
    session: Session, filters: ExtractionFilter, model: str | None, limit: int
) -> list[uuid.UUID]:
    """The calls whose current extraction is in the filter (the newest first), at most
    `limit`; not those queued or running now (a worker has them already)."""
    conditions: list[Any] = current_conditions(filters)
    if model is not None:
        conditions.append(Extraction.model == model)
    statement = (
        select(Extraction.transcript_id)
        .join(Transcript, Transcript.id == Extraction.transcript_id)
        .where(*conditions, Transcript.status.in_(("succeeded", "failed")))
        .order_by(Extraction.occurred_at.desc(), Extraction.id.desc())
        .limit(limit)
    )
    return list(session.scalars(statement))


def add_items(session: Session, job_id: uuid.UUID, transcript_ids: Sequence[uuid.UUID]) -> None:
    if transcript_ids:
        session.execute(
            insert(ReextractionItem),
            [{"reextraction_id": job_id, "transcript_id": t} for t in transcript_ids],
        )


def requeue(
    session: Session,
    transcript_ids: Sequence[uuid.UUID],
    taxonomy_version: str,
    queue: str,
    now: datetime,
) -> list[uuid.UUID]:
    """Put finished calls back in the queue, for this taxonomy version; returns those put
    back (one a worker holds is left to it)."""
    if not transcript_ids:
        return []
    rows = session.execute(
        update(Transcript)
        .where(Transcript.id.in_(transcript_ids), Transcript.status.in_(("succeeded", "failed")))
        .values(
            status="queued",
            queue=queue,
            taxonomy_version=taxonomy_version,
            lease_until=None,
            claim_token=None,
            updated_at=now,
        )
        .returning(Transcript.id)
        .execution_options(synchronize_session=False)
    )
    return [row[0] for row in rows]


def progress(session: Session, job: Reextraction) -> dict[str, int]:
    """The job's calls: `done` (a current extraction stored since the job began), and the
    rest by their status now (`queued`, `running`; `failed` and `succeeded` counted in done
    when re-extracted)."""
    items = select(ReextractionItem.transcript_id).where(ReextractionItem.reextraction_id == job.id)
    done = session.scalar(
        select(func.count())
        .select_from(Extraction)
        .where(
            Extraction.transcript_id.in_(items),
            Extraction.is_current,
            Extraction.created_at >= job.created_at,
        )
    )
    rows = session.execute(
        select(Transcript.status, func.count())
        .where(Transcript.id.in_(items))
        .group_by(Transcript.status)
    )
    counts = {status: int(count) for status, count in rows}
    return {
        "done": int(done or 0),
        "queued": counts.get("queued", 0),
        "running": counts.get("running", 0),
    }
