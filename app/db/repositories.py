"""Every query callx makes. Functions take the session; none of them commits."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, func, literal_column, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.db.models import ApiKey, Batch, Extraction, Transcript

# ---- transcripts -----------------------------------------------------------------------


def get_transcript(session: Session, transcript_id: uuid.UUID) -> Transcript | None:
    return session.get(Transcript, transcript_id)


def find_transcript(session: Session, source: str, external_id: str) -> Transcript | None:
    return session.scalars(
        select(Transcript).where(Transcript.source == source, Transcript.external_id == external_id)
    ).one_or_none()


def find_transcript_hashes(
    session: Session, keys: Iterable[tuple[str, str]], chunk: int = 500
) -> dict[tuple[str, str], tuple[uuid.UUID, str]]:
    """(source, external_id) -> (id, text_sha256) for the keys that already exist."""
    by_source: dict[str, list[str]] = {}
    for source, external_id in keys:
        by_source.setdefault(source, []).append(external_id)
    found: dict[tuple[str, str], tuple[uuid.UUID, str]] = {}
    for source, ids in by_source.items():
        for start in range(0, len(ids), chunk):
            rows = session.execute(
                select(Transcript.external_id, Transcript.id, Transcript.text_sha256).where(
                    Transcript.source == source,
                    Transcript.external_id.in_(ids[start : start + chunk]),
                )
            )
            for external_id, tid, digest in rows:
                found[(source, external_id)] = (tid, digest)
    return found


def insert_transcripts_skipping_duplicates(
    session: Session, rows: Sequence[dict[str, Any]]
) -> set[uuid.UUID]:
    """Insert rows; a (source, external_id) that already exists is skipped. Returns inserted ids."""
    if not rows:
        return set()
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(Transcript)
        .on_conflict_do_nothing(index_elements=["source", "external_id"])
        .returning(Transcript.id)
    )
    inserted = session.scalars(statement, list(rows))
    return set(inserted)


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


# ---- the worker's lease on a transcript ----------------------------------------------------


def claim_transcript(
    session: Session,
    transcript_id: uuid.UUID,
    token: uuid.UUID,
    now: datetime,
    lease_until: datetime,
) -> bool:
    """Take a queued transcript, or one whose lease ran out. False: finished or someone holds it."""
    result = session.execute(
        update(Transcript)
        .where(
            Transcript.id == transcript_id,
            or_(
                Transcript.status == "queued",
                and_(Transcript.status == "running", Transcript.lease_until < now),
            ),
        )
        .values(
            status="running",
            claim_token=token,
            lease_until=lease_until,
            runs=Transcript.runs + 1,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def finish_transcript(
    session: Session, transcript_id: uuid.UUID, token: uuid.UUID, status: str, now: datetime
) -> bool:
    """Close our claim. False if the lease was lost to another worker meanwhile."""
    result = session.execute(
        update(Transcript)
        .where(
            Transcript.id == transcript_id,
            Transcript.status == "running",
            Transcript.claim_token == token,
        )
        .values(status=status, lease_until=None, claim_token=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def add_current_extraction(session: Session, extraction: Extraction) -> None:
    """Store a new attempt as the current one; earlier attempts are kept, no longer current."""
    session.execute(
        update(Extraction)
        .where(Extraction.transcript_id == extraction.transcript_id, Extraction.is_current)
        .values(is_current=False)
        .execution_options(synchronize_session=False)
    )
    extraction.is_current = True
    session.add(extraction)
    session.flush()


def current_extraction(session: Session, transcript_id: uuid.UUID) -> Extraction | None:
    return session.scalars(
        select(Extraction).where(Extraction.transcript_id == transcript_id, Extraction.is_current)
    ).one_or_none()


def requeue_expired_leases(
    session: Session, now: datetime, limit: int
) -> list[tuple[uuid.UUID, str]]:
    """Running transcripts whose worker's lease ran out go back to queued (their worker, if
    still alive, can no longer store a result: its claim token is cleared)."""
    rows = session.execute(
        select(Transcript.id, Transcript.queue)
        .where(Transcript.status == "running", Transcript.lease_until < now)
        .limit(limit)
    ).all()
    if rows:
        session.execute(
            update(Transcript)
            .where(Transcript.id.in_([r[0] for r in rows]), Transcript.status == "running")
            .values(status="queued", claim_token=None, lease_until=None, updated_at=now)
            .execution_options(synchronize_session=False)
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


# ---- results and analytics ---------------------------------------------------------------


@dataclass(frozen=True)
class ExtractionFilter:
    reason: str | None = None
    product: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _current(filters: ExtractionFilter) -> list[Any]:
    conditions: list[Any] = [Extraction.is_current]
    if filters.reason is not None:
        conditions.append(Extraction.reason == filters.reason)
    if filters.product is not None:
        conditions.append(Extraction.product_key == filters.product)
    if filters.since is not None:
        conditions.append(Extraction.occurred_at >= filters.since)
    if filters.until is not None:
        conditions.append(Extraction.occurred_at < filters.until)
    return conditions


def list_extractions(
    session: Session,
    filters: ExtractionFilter,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> list[tuple[Extraction, Transcript]]:
    """Current extractions, newest call first, keyset-paginated on (occurred_at, id)."""
    conditions = _current(filters)
    if after is not None:
        occurred_at, extraction_id = after
        conditions.append(
            or_(
                Extraction.occurred_at < occurred_at,
                and_(Extraction.occurred_at == occurred_at, Extraction.id < extraction_id),
            )
        )
    statement: Select[tuple[Extraction, Transcript]] = (
        select(Extraction, Transcript)
        .join(Transcript, Transcript.id == Extraction.transcript_id)
        .where(*conditions)
        .order_by(Extraction.occurred_at.desc(), Extraction.id.desc())
        .limit(limit)
    )
    return [(e, t) for e, t in session.execute(statement)]


def _bucket_expression(dialect: str, bucket: str) -> Any:
    if dialect == "postgresql":
        return func.date_trunc(bucket, Extraction.occurred_at)
    formats = {
        "day": func.strftime("%Y-%m-%d", Extraction.occurred_at),
        # SQLite: back to the Monday of the week (weekday 0 is Sunday).
        "week": func.strftime(
            "%Y-%m-%d",
            Extraction.occurred_at,
            literal_column("'-' || ((strftime('%w', extractions.occurred_at) + 6) % 7) || ' days'"),
        ),
        "month": func.strftime("%Y-%m-01", Extraction.occurred_at),
    }
    return formats[bucket]


def reason_counts(
    session: Session, bucket: str, since: datetime | None, until: datetime | None
) -> list[tuple[Any, str, int]]:
    dialect = session.get_bind().dialect.name
    bucket_expr = _bucket_expression(dialect, bucket).label("bucket")
    conditions = _current(ExtractionFilter(since=since, until=until))
    conditions.append(Extraction.status == "succeeded")
    rows = session.execute(
        select(bucket_expr, Extraction.reason, func.count())
        .where(*conditions)
        .group_by(bucket_expr, Extraction.reason)
        .order_by(bucket_expr, Extraction.reason)
    )
    return [(b, r, c) for b, r, c in rows]


def product_counts(
    session: Session,
    reason: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
) -> list[tuple[str, int, dict[str, int]]]:
    """Top products by number of calls, each with its calls per reason."""
    conditions = _current(ExtractionFilter(reason=reason, since=since, until=until))
    conditions += [Extraction.status == "succeeded", Extraction.product_key.is_not(None)]
    top = (
        select(
            Extraction.product_key,
            func.min(Extraction.product).label("product"),
            func.count().label("total"),
        )
        .where(*conditions)
        .group_by(Extraction.product_key)
        .order_by(func.count().desc(), Extraction.product_key)
        .limit(limit)
        .subquery()
    )
    per_reason = session.execute(
        select(top.c.product_key, top.c.product, top.c.total, Extraction.reason, func.count())
        .join(Extraction, Extraction.product_key == top.c.product_key)
        .where(*conditions)
        .group_by(top.c.product_key, top.c.product, top.c.total, Extraction.reason)
        .order_by(top.c.total.desc(), top.c.product_key)
    )
    result: dict[str, tuple[str, int, dict[str, int]]] = {}
    for key, product, total, reason_code, count in per_reason:
        entry = result.setdefault(key, (product, total, {}))
        entry[2][reason_code] = count
    return list(result.values())


# ---- API keys ------------------------------------------------------------------------------


def get_api_key(session: Session, key_id: str) -> ApiKey | None:
    return session.get(ApiKey, key_id)


def add_api_key(session: Session, key: ApiKey) -> None:
    session.add(key)
    session.flush()


def list_api_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)))
