"""Human labels and the review queue: labels written (the call's answer and the rollups
follow), read back with their history, the queue listed, and the rows production quality is
measured on. None of these functions commits."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from app.db.models import EXPLORE_CAUSE, Extraction, Label, Transcript
from app.db.results import current_extraction
from app.db.rollups import COUNTED, update_rollups


def lock_transcript(session: Session, transcript_id: uuid.UUID) -> Transcript | None:
    """The transcript, its row locked until the commit (PostgreSQL): a label and a worker
    storing a new extraction of the call take turns, so neither misses the other's write."""
    return session.scalars(
        select(Transcript).where(Transcript.id == transcript_id).with_for_update()
    ).one_or_none()


def current_label(session: Session, transcript_id: uuid.UUID) -> Label | None:
    return session.scalars(
        select(Label).where(Label.transcript_id == transcript_id, Label.is_current)
    ).one_or_none()


def current_labels(session: Session, transcript_ids: list[uuid.UUID]) -> dict[uuid.UUID, Label]:
    if not transcript_ids:
        return {}
    rows = session.scalars(
        select(Label).where(Label.transcript_id.in_(transcript_ids), Label.is_current)
    )
    return {label.transcript_id: label for label in rows}


def label_history(session: Session, transcript_id: uuid.UUID) -> list[Label]:
    return list(
        session.scalars(
            select(Label).where(Label.transcript_id == transcript_id).order_by(Label.version)
        )
    )


def add_label(session: Session, label: Label) -> None:
    """Store `label` as the call's current one (the earlier ones kept), and make it the answer
    of the call's current extraction: the rollups follow, the call leaves the review queue.

    Two writers of the same version: the second insert violates (transcript_id, version) and
    raises IntegrityError (the caller's 409)."""
    session.execute(
        update(Label)
        .where(Label.transcript_id == label.transcript_id, Label.is_current)
        .values(is_current=False)
    )
    session.add(label)
    session.flush()
    extraction = current_extraction(session, label.transcript_id)
    if extraction is None:
        return
    before = tuple(getattr(extraction, column.key) for column in COUNTED)
    extraction.answer_reason = label.reason
    extraction.answer_product = label.product
    extraction.answer_product_key = label.product_key
    extraction.answer_by = "label"
    extraction.review_priority = None
    session.flush()
    after = tuple(getattr(extraction, column.key) for column in COUNTED)
    update_rollups(session, removed=[before], added=[after])


@dataclass(frozen=True)
class QueueFilter:
    source: str | None = None
    reason: str | None = None  # the model's reason
    since: datetime | None = None
    taxonomy_version: str | None = None


def review_queue(
    session: Session, filters: QueueFilter, limit: int, after: tuple[float, uuid.UUID] | None
) -> list[tuple[Extraction, Transcript]]:
    """Current extractions waiting for a person, lowest review_priority first (the audit
    sample, then calls without a confidence, then the lowest confidence, the explored calls
    among them), keyset-paginated on (review_priority, id)."""
    conditions: list[Any] = [Extraction.is_current, Extraction.review_priority.is_not(None)]
    if filters.source is not None:
        conditions.append(Extraction.source == filters.source)
    if filters.reason is not None:
        conditions.append(Extraction.reason == filters.reason)
    if filters.since is not None:
        conditions.append(Extraction.occurred_at >= filters.since)
    if filters.taxonomy_version is not None:
        conditions.append(Extraction.taxonomy_version == filters.taxonomy_version)
    if after is not None:
        priority, extraction_id = after
        conditions.append(
            or_(
                Extraction.review_priority > priority,
                and_(Extraction.review_priority == priority, Extraction.id > extraction_id),
            )
        )
    statement = (
        select(Extraction, Transcript)
        .join(Transcript, Transcript.id == Extraction.transcript_id)
        .where(*conditions)
        .order_by(Extraction.review_priority, Extraction.id)
        .limit(limit)
    )
    return [(e, t) for e, t in session.execute(statement)]


@dataclass(frozen=True)
class QualityFilter:
    since: datetime | None = None
    until: datetime | None = None
    model: str | None = None
    taxonomy_version: str | None = None
    source: str | None = None


def _range(column: Any, filters: QualityFilter) -> list[Any]:
    conditions: list[Any] = []
    if filters.since is not None:
        conditions.append(column >= filters.since)
    if filters.until is not None:
        conditions.append(column < filters.until)
    return conditions


def _judged(filters: QualityFilter) -> list[Any]:
    """Conditions on the extraction a label judged."""
    conditions = _range(Extraction.occurred_at, filters)
    if filters.model is not None:
        conditions.append(Extraction.model == filters.model)
    if filters.taxonomy_version is not None:
        conditions.append(Extraction.taxonomy_version == filters.taxonomy_version)
    if filters.source is not None:
        conditions.append(Extraction.source == filters.source)
    return conditions


@dataclass(frozen=True)
class JudgedAnswer:
    """A call's current label and the model's answer it judged."""

    label_reason: str
    label_product: str | None
    status: str
    reason: str | None
    product: str | None
    model: str
    taxonomy_version: str
    in_audit: bool
    review_cause: str | None


def audit_reason_counts(session: Session, filters: QualityFilter) -> tuple[int, int]:
    """(right, labelled) on the audit sample in the filter: the model's reason equal to the
    current label's (a failed extraction is wrong), read from the audit sample's index."""
    right = and_(Extraction.status == "succeeded", Extraction.reason == Label.reason)
    row = session.execute(
        select(func.count().filter(right), func.count())
        .select_from(Label)
        .join(Extraction, Extraction.id == Label.extraction_id)
        .where(
            Label.is_current,
            Extraction.review_threshold.is_not(None),
            Extraction.in_audit,
            *_judged(filters),
        )
    ).one()
    return int(row[0]), int(row[1])


def judged_answers(session: Session, filters: QualityFilter) -> Iterator[JudgedAnswer]:
    """Each labelled call's current label with the extraction it replaced (the one the model
    was judged on), for calls with a review decision, in the filter."""
    statement = (
        select(
            Label.reason,
            Label.product,
            Extraction.status,
            Extraction.reason,
            Extraction.product,
            Extraction.model,
            Extraction.taxonomy_version,
            Extraction.in_audit,
            Extraction.review_cause,
        )
        .join(Extraction, Extraction.id == Label.extraction_id)
        .where(Label.is_current, Extraction.review_threshold.is_not(None), *_judged(filters))
    )
    for row in session.execute(statement):
        yield JudgedAnswer(*row)


def decision_counts(session: Session, filters: QualityFilter) -> dict[str, int]:
    """Current extractions with a review decision, in the filter: `calls`, `accepted` (on the
    model's confidence: no cause, or drawn for exploration), `explored` and `audit` (in the
    audit sample)."""
    decided = [Extraction.is_current, Extraction.review_threshold.is_not(None)]
    row = session.execute(
        select(
            func.count(),
            func.count().filter(
                or_(Extraction.review_cause.is_(None), Extraction.review_cause == EXPLORE_CAUSE)
            ),
            func.count().filter(Extraction.review_cause == EXPLORE_CAUSE),
            func.count().filter(Extraction.in_audit),
        ).where(*decided, *_judged(filters))
    ).one()
    return {
        "calls": int(row[0]),
        "accepted": int(row[1]),
        "explored": int(row[2]),
        "audit": int(row[3]),
    }


@dataclass(frozen=True)
class LabelledCall:
    """A labelled call, as `callx labels export` writes it."""

    label: Label
    transcript: Transcript
    extraction: Extraction | None


def labelled_calls(
    session: Session, since: datetime | None, source: str | None, chunk: int = 500
) -> Iterator[LabelledCall]:
    """Every call's current label with its transcript and the extraction it judged, oldest
    label first, read in chunks."""
    conditions: list[Any] = [Label.is_current]
    if since is not None:
        conditions.append(Label.created_at >= since)
    if source is not None:
        conditions.append(Transcript.source == source)
    statement = (
        select(Label, Transcript, Extraction)
        .join(Transcript, Transcript.id == Label.transcript_id)
        .outerjoin(Extraction, Extraction.id == Label.extraction_id)
        .where(*conditions)
        .order_by(Label.created_at, Label.id)
        .execution_options(yield_per=chunk)
    )
    for label, transcript, extraction in session.execute(statement):
        yield LabelledCall(label, transcript, extraction)
