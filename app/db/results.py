"""Extractions: stored as the current attempt (the rollups follow), read back, listed.
None of these functions commits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    and_,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from app.db.base import cast_table
from app.db.models import (
    Extraction,
    Label,
    Transcript,
)
from app.db.rollups import COUNTED, update_rollups

_EXTRACTIONS = cast_table(Extraction)


def add_current_extractions(session: Session, extractions: Sequence[dict[str, Any]]) -> None:
    """Store new attempts (column values, one per transcript) as the current ones; earlier
    attempts are kept, no longer current.

    Each one's answer (answer_*) is the call's current human label where it has one (a label
    outlives a re-extraction: a person's word is not overwritten by a model's), else the
    model's. A labelled call leaves the review queue. The analytics rollups follow in the same
    transaction: the replaced extractions' counts out, the new ones' in."""
    if not extractions:
        return
    e = _EXTRACTIONS.c
    connection = session.connection()
    ids = [x["transcript_id"] for x in extractions]
    replaced = connection.execute(
        update(_EXTRACTIONS)
        .where(e.transcript_id.in_(ids), e.is_current)
        .values(is_current=False)
        .returning(*(_EXTRACTIONS.c[column.key] for column in COUNTED))
    ).all()
    labels = {
        row.transcript_id: row
        for row in connection.execute(
            select(
                Label.transcript_id,
                Label.reason,
                Label.product,
                Label.product_key,
                Label.taxonomy_version,
            ).where(Label.transcript_id.in_(ids), Label.is_current)
        )
    }
    rows = [
        {**x, **_answer(x, labels.get(x["transcript_id"])), "is_current": True} for x in extractions
    ]
    connection.execute(insert(_EXTRACTIONS), rows)
    added = [tuple(x[column.key] for column in COUNTED) for x in rows]
    update_rollups(session, removed=[tuple(r) for r in replaced], added=added)


def _answer(extraction: dict[str, Any], label: Any) -> dict[str, Any]:
    """The answer columns of a new extraction: the label's (of the same taxonomy: a label's
    code means nothing in another), else the model's (none: failed)."""
    if label is not None and label.taxonomy_version == extraction["taxonomy_version"]:
        return {
            "answer_reason": label.reason,
            "answer_product": label.product,
            "answer_product_key": label.product_key,
            "answer_by": "label",
            "review_priority": None,
        }
    if extraction["status"] != "succeeded":
        return {
            "answer_reason": None,
            "answer_product": None,
            "answer_product_key": None,
            "answer_by": None,
        }
    return {
        "answer_reason": extraction["reason"],
        "answer_product": extraction["product"],
        "answer_product_key": extraction["product_key"],
        "answer_by": "model",
    }


def current_extraction(session: Session, transcript_id: uuid.UUID) -> Extraction | None:
    return session.scalars(
        select(Extraction).where(Extraction.transcript_id == transcript_id, Extraction.is_current)
    ).one_or_none()


# A call's place in the review loop, as a condition on its current extraction: waiting for a
# person (in the review queue), labelled by one, accepted without one, drawn for the audit.
_REVIEW_STATES: dict[str, Any] = {
    "waiting": Extraction.review_priority.is_not(None),
    "labelled": Extraction.answer_by == "label",
    "auto": and_(
        Extraction.review_threshold.is_not(None),
        Extraction.review_cause.is_(None),
        Extraction.answer_by == "model",
        Extraction.review_priority.is_(None),
    ),
    "audit": Extraction.in_audit,
    # The audit calls people labelled: those /v1/quality's unbiased figure counts.
    "audit_reviewed": and_(Extraction.in_audit, Extraction.answer_by == "label"),
}
REVIEW_STATES = tuple(_REVIEW_STATES)


@dataclass(frozen=True)
class ExtractionFilter:
    """Conditions on current extractions (None: any). `reason` and `product` (a product_key)
    are on the answer (the label's where the call has one)."""

    reason: str | None = None
    product: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    source: str | None = None
    taxonomy_version: str | None = None
    status: str | None = None
    min_confidence: float | None = None
    max_confidence: float | None = None
    # The call's place in the review loop (REVIEW_STATES).
    review: str | None = None
    # True: only calls with an answer (the ones the analytics count).
    answered: bool | None = None
    # Conditions on the transcript (list_extractions joins it).
    batch_id: uuid.UUID | None = None
    language: str | None = None


def current_conditions(filters: ExtractionFilter) -> list[Any]:
    """The conditions on Extraction alone (not batch_id or language: see list_extractions)."""
    conditions: list[Any] = [Extraction.is_current]
    if filters.reason is not None:
        conditions.append(Extraction.answer_reason == filters.reason)
    if filters.product is not None:
        conditions.append(Extraction.answer_product_key == filters.product)
    if filters.since is not None:
        conditions.append(Extraction.occurred_at >= filters.since)
    if filters.until is not None:
        conditions.append(Extraction.occurred_at < filters.until)
    if filters.source is not None:
        conditions.append(Extraction.source == filters.source)
    if filters.taxonomy_version is not None:
        conditions.append(Extraction.taxonomy_version == filters.taxonomy_version)
    if filters.status is not None:
        conditions.append(Extraction.status == filters.status)
    if filters.min_confidence is not None:
        conditions.append(Extraction.confidence >= filters.min_confidence)
    if filters.max_confidence is not None:
        conditions.append(Extraction.confidence <= filters.max_confidence)
    if filters.review is not None:
        conditions.append(_REVIEW_STATES[filters.review])
    if filters.answered:
        conditions.append(Extraction.answer_reason.is_not(None))
    return conditions


def list_extractions(
    session: Session,
    filters: ExtractionFilter,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> list[tuple[Extraction, Transcript]]:
    """Current extractions, newest call first, keyset-paginated on (occurred_at, id)."""
    conditions = current_conditions(filters)
    if filters.batch_id is not None:
        conditions.append(Transcript.batch_id == filters.batch_id)
    if filters.language is not None:
        conditions.append(func.lower(Transcript.language) == filters.language.lower())
    if after is not None:
        occurred_at, extraction_id = after
        conditions.append(
            or_(
                Extraction.occurred_at < occurred_at,
                and_(Extraction.occurred_at == occurred_at, Extraction.id < extraction_id),
            )
        )
        # Implied by the above, but usable as an index bound: the scan starts at the cursor
        # instead of reading (and filtering out) every newer row, page after page.
        conditions.append(Extraction.occurred_at <= occurred_at)
    statement = (
        select(Extraction, Transcript)
        .join(Transcript, Transcript.id == Extraction.transcript_id)
        .where(*conditions)
        .order_by(Extraction.occurred_at.desc(), Extraction.id.desc())
        .limit(limit)
    )
    return [(e, t) for e, t in session.execute(statement)]


def extraction_attempts(session: Session, transcript_id: uuid.UUID) -> list[Extraction]:
    """Every extraction of a call, the first attempt first."""
    return list(
        session.scalars(
            select(Extraction)
            .where(Extraction.transcript_id == transcript_id)
            .order_by(Extraction.created_at, Extraction.id)
        )
    )


def count_failed(
    session: Session, since: datetime | None, until: datetime | None, source: str | None
) -> int:
    """Calls whose current extraction failed, by the time of the call (a small index)."""
    filters = ExtractionFilter(since=since, until=until, source=source, status="failed")
    return int(session.scalar(select(func.count()).where(*current_conditions(filters))) or 0)


def count_waiting_for_review(session: Session, taxonomy_version: str | None, cap: int) -> int:
    """Calls in the review queue now (of one taxonomy version, where given), counted up to
    `cap` + 1: a queue of a million is "over cap", read from the queue's index in a few
    milliseconds instead of counted whole."""
    filters = ExtractionFilter(taxonomy_version=taxonomy_version, review="waiting")
    waiting = (
        select(Extraction.id)
        .where(*current_conditions(filters))
        .order_by(Extraction.review_priority, Extraction.id)
        .limit(cap + 1)
        .subquery()
    )
    return int(session.scalar(select(func.count()).select_from(waiting)) or 0)
