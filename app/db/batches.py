"""Batches: their rows and their transcripts' progress. None of these functions commits."""

from __future__ import annotations

import uuid

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
    rows = session.execute(
        select(Transcript.status, func.count())
        .where(Transcript.batch_id == batch_id)
        .group_by(Transcript.status)
    )
    return {status: count for status, count in rows}
