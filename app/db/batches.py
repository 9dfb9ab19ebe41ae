"""Batches: their rows and their transcripts' progress. None of these functions commits."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    func,
    select,
)
from sqlalchemy.orm import Session

from app.db.models import (
    Batch,
    Transcript,
)


def add_batch(session: Session, batch: Batch) -> None:
    session.add(batch)
    session.flush()


def delete_batch(session: Session, batch: Batch) -> None:
    session.delete(batch)
    session.flush()


def get_batch(session: Session, batch_id: uuid.UUID) -> Batch | None:
    return session.get(Batch, batch_id)


def batch_status_counts(session: Session, batch_id: uuid.UUID) -> dict[str, int]:
    return status_counts_of(session, [batch_id])[batch_id]


def recent_batches(session: Session, limit: int, before: datetime | None) -> list[Batch]:
    """Batches, the newest first, received before `before` where given."""
    statement = select(Batch).order_by(Batch.created_at.desc(), Batch.id.desc()).limit(limit)
    if before is not None:
        statement = statement.where(Batch.created_at < before)
    return list(session.scalars(statement))


def status_counts_of(
    session: Session, batch_ids: list[uuid.UUID]
) -> dict[uuid.UUID, dict[str, int]]:
    """Per batch: its transcripts per status (batch_id's index)."""
    counts: dict[uuid.UUID, dict[str, int]] = {batch_id: {} for batch_id in batch_ids}
    if not batch_ids:
        return counts
    rows = session.execute(
        select(Transcript.batch_id, Transcript.status, func.count())
        .where(Transcript.batch_id.in_(batch_ids))
        .group_by(Transcript.batch_id, Transcript.status)
    )
    for batch_id, status, count in rows:
        counts[batch_id][status] = count  # type: ignore[index]  # in batch_ids: never None
    return counts
