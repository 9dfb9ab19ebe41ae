"""The worker's lease on a transcript: claimed, closed, and taken back when it runs out.

The worker's writes run as Core statements on the session's connection: the ORM's bookkeeping
would cost more CPU than the statements (they are group-committed, hundreds a second on an API
backend's worker). None of these functions commits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    and_,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.orm import Session

from app.db.base import cast_table
from app.db.models import (
    Transcript,
)


@dataclass(frozen=True)
class ClaimedTranscript:
    """What a worker needs of a transcript it has just claimed."""

    id: uuid.UUID
    text: str
    occurred_at: datetime
    source: str
    language: str | None


_TRANSCRIPTS = cast_table(Transcript)


def claim_transcripts(
    session: Session,
    transcript_ids: Sequence[uuid.UUID],
    token: uuid.UUID,
    now: datetime,
    lease_until: datetime,
    taxonomy_version: str,
) -> dict[uuid.UUID, ClaimedTranscript]:
    """Take the queued transcripts among `transcript_ids`, and those whose lease ran out, for
    `token` until `lease_until`. The others (finished, held by someone, or queued for another
    taxonomy than `taxonomy_version`) are left out."""
    t = _TRANSCRIPTS.c
    rows = session.connection().execute(
        update(_TRANSCRIPTS)
        .where(
            t.id.in_(transcript_ids),
            or_(t.status == "queued", and_(t.status == "running", t.lease_until < now)),
            or_(t.taxonomy_version.is_(None), t.taxonomy_version == taxonomy_version),
        )
        .values(
            status="running",
            claim_token=token,
            lease_until=lease_until,
            runs=t.runs + 1,
            updated_at=now,
        )
        .returning(t.id, t.text, t.occurred_at, t.source, t.language)
    )
    return {row.id: ClaimedTranscript(*row) for row in rows}


def finish_transcripts(
    session: Session,
    finished: Sequence[tuple[uuid.UUID, uuid.UUID, str]],
    now: datetime,
) -> set[uuid.UUID]:
    """Close claims, given as (transcript id, claim token, final status). Returns the ids whose
    claim still held; the others' leases were lost to another worker meanwhile."""
    t = _TRANSCRIPTS.c
    closed: set[uuid.UUID] = set()
    for status in sorted({status for _, _, status in finished}):
        claims = [(tid, token) for tid, token, s in finished if s == status]
        rows = session.connection().execute(
            update(_TRANSCRIPTS)
            .where(tuple_(t.id, t.claim_token).in_(claims), t.status == "running")
            .values(status=status, lease_until=None, claim_token=None, updated_at=now)
            .returning(t.id)
        )
        closed.update(rows.scalars())
    return closed


def renew_leases(
    session: Session, claims: Sequence[tuple[uuid.UUID, uuid.UUID]], lease_until: datetime
) -> set[uuid.UUID]:
    """Extend to `lease_until` the leases of the given (transcript id, claim token) claims
    that still hold; returns their ids (a claim taken over or closed meanwhile is left as it
    is)."""
    if not claims:
        return set()
    t = _TRANSCRIPTS.c
    rows = session.connection().execute(
        update(_TRANSCRIPTS)
        .where(tuple_(t.id, t.claim_token).in_(claims), t.status == "running")
        .values(lease_until=lease_until)
        .returning(t.id)
    )
    return set(rows.scalars())


def release_claims(
    session: Session, claims: Sequence[tuple[uuid.UUID, uuid.UUID]], now: datetime
) -> list[tuple[uuid.UUID, str]]:
    """Give the claims that still hold back to the queue (queued, no claim, no lease) before
    their call is done; returns (id, queue) of those given back, to be sent again."""
    if not claims:
        return []
    t = _TRANSCRIPTS.c
    rows = session.connection().execute(
        update(_TRANSCRIPTS)
        .where(tuple_(t.id, t.claim_token).in_(claims), t.status == "running")
        .values(status="queued", claim_token=None, lease_until=None, updated_at=now)
        .returning(t.id, t.queue)
    )
    return [(tid, queue) for tid, queue in rows]


def transcript_states(
    session: Session, transcript_ids: Sequence[uuid.UUID], now: datetime
) -> dict[uuid.UUID, str]:
    """The status of each of `transcript_ids` that exists, a running one's told by its lease
    at `now`: `running` while it holds, `expired` once it ran out."""
    if not transcript_ids:
        return {}
    t = _TRANSCRIPTS.c
    rows = session.connection().execute(
        select(t.id, t.status, t.lease_until < now).where(t.id.in_(transcript_ids))
    )
    return {
        tid: "expired" if status == "running" and expired else status
        for tid, status, expired in rows
    }


def requeue_expired_leases(
    session: Session, now: datetime, limit: int
) -> list[tuple[uuid.UUID, str]]:
    """Running transcripts whose worker's lease ran out go back to queued (their worker, if
    still alive, can no longer store a result: its claim token is cleared). Returns those
    requeued: one retaken meanwhile by a worker (a fresh lease) is left to it."""
    ids = list(
        session.scalars(
            select(Transcript.id)
            .where(Transcript.status == "running", Transcript.lease_until < now)
            .limit(limit)
        )
    )
    if not ids:
        return []
    t = _TRANSCRIPTS.c
    rows = session.connection().execute(
        update(_TRANSCRIPTS)
        .where(t.id.in_(ids), t.status == "running", t.lease_until < now)
        .values(status="queued", claim_token=None, lease_until=None, updated_at=now)
        .returning(t.id, t.queue)
    )
    return [(tid, queue) for tid, queue in rows]


def take_stale_queued(
    session: Session, queue: str, before: datetime, now: datetime, limit: int
) -> list[uuid.UUID]:
    """Queued transcripts of `queue` untouched since `before`, marked as touched now (so one
    re-send is not followed by another before the grace period passes again)."""
    ids = list(
        session.scalars(
            select(Transcript.id)
            .where(
                Transcript.status == "queued",
                Transcript.queue == queue,
                Transcript.updated_at < before,
            )
            .order_by(Transcript.updated_at)
            .limit(limit)
        )
    )
    if ids:
        session.execute(
            update(Transcript)
            .where(Transcript.id.in_(ids))
            .values(updated_at=now)
            .execution_options(synchronize_session=False)
        )
    return ids
