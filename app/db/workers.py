"""Worker heartbeats, and the queued calls they can serve. None of these functions commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from app.db.models import Transcript, WorkerHeartbeat


def beat(session: Session, values: dict[str, Any], now: datetime) -> None:
    """Record that the worker `values["name"]` is alive now (its row made on the first beat),
    and the model it runs now (one that follows the registry switches adapters)."""
    updated = session.execute(
        update(WorkerHeartbeat)
        .where(WorkerHeartbeat.name == values["name"])
        .values(last_seen=now, model=values["model"])
        .execution_options(synchronize_session=False)
    )
    if updated.rowcount == 0:  # type: ignore[attr-defined]
        session.add(WorkerHeartbeat(**values, started_at=now, last_seen=now))


def remove(session: Session, name: str) -> None:
    session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.name == name))


def prune(session: Session, before: datetime) -> None:
    """Forget workers silent since `before` (killed, never to come back under that name)."""
    session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.last_seen < before))


def seen_since(session: Session, since: datetime) -> Sequence[WorkerHeartbeat]:
    return session.scalars(
        select(WorkerHeartbeat)
        .where(WorkerHeartbeat.last_seen >= since)
        .order_by(WorkerHeartbeat.name)
    ).all()


def queued_by_queue_and_taxonomy(session: Session) -> list[tuple[str, str | None, int]]:
    """Calls waiting (queued or running) per queue and taxonomy version."""
    rows = session.execute(
        select(Transcript.queue, Transcript.taxonomy_version, func.count())
        .where(Transcript.status.in_(("queued", "running")))
        .group_by(Transcript.queue, Transcript.taxonomy_version)
    )
    return [(queue, taxonomy, int(count)) for queue, taxonomy, count in rows]
