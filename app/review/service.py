"""The review queue and human labels. Functions take the session; none of them commits."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db import labels as labels_db
from app.db import results as results_db
from app.db import transcripts as transcripts_db
from app.db.labels import QueueFilter
from app.db.models import Label
from app.errors import ConflictError, InvalidRequestError, NotFoundError
from app.results.cursor import decode_queue_cursor, encode_queue_cursor
from app.results.service import CallDetail, extraction_read, label_read
from schemas.api import ExtractionRead, LabelRead
from schemas.extraction import product_key
from schemas.review import LabelHistory, LabelWrite, ReviewItem, ReviewPage
from schemas.taxonomy import Taxonomy


@dataclass(frozen=True)
class ReviewCard:
    """One call as a reviewer sees it: the transcript, the model's answer, the current label
    (its version is the one a new label must name), and where the queue goes on after it."""

    transcript_id: uuid.UUID
    external_id: str | None
    source: str
    language: str | None
    occurred_at: datetime
    text: str
    extraction: ExtractionRead | None
    label: LabelRead | None
    version: int
    after: str | None = None  # the queue position it was shown after (saving goes on there)
    skip_to: str | None = None  # the position after it (skipping goes on there)
    in_queue: bool = False  # shown as the queue's next call (else opened from its page)

    @classmethod
    def of_queue_item(cls, item: ReviewItem, after: str | None, skip_to: str | None) -> ReviewCard:
        return cls(
            item.transcript_id, item.external_id, item.source, item.language, item.occurred_at,
            item.text, item.extraction, None, item.label_version, after, skip_to, True,
        )

    @classmethod
    def of_call(
        cls, detail: CallDetail, after: str | None = None, in_queue: bool = False
    ) -> ReviewCard:
        call = detail.call
        return cls(
            call.id, call.external_id, call.source, call.language, call.occurred_at,
            detail.text, call.extraction, call.label,
            0 if call.label is None else call.label.version, after, None, in_queue,
        )


@dataclass(frozen=True)
class Reviewer:
    """Who writes a label: the API key's name (its id where it has none), and the key."""

    name: str
    key_id: str | None = None


def review_queue(
    session: Session, filters: QueueFilter, *, page_size: int, cursor: str | None
) -> ReviewPage:
    """The calls that need a person, lowest confidence first (the audit sample, then failed
    calls, first of all; the explored calls among the unsure ones)."""
    after = decode_queue_cursor(cursor) if cursor else None
    rows = labels_db.review_queue(session, filters, page_size + 1, after)
    items = [
        ReviewItem(
            transcript_id=t.id,
            external_id=t.external_id,
            source=t.source,
            language=t.language,
            occurred_at=t.occurred_at,
            batch_id=t.batch_id,
            metadata=t.metadata_,
            text=t.text,
            extraction=extraction_read(e),  # type: ignore[arg-type]
            label_version=0,  # a labelled call leaves the queue
        )
        for e, t in rows[:page_size]
    ]
    next_cursor = None
    if len(rows) > page_size:
        last = rows[page_size - 1][0]
        assert last.review_priority is not None
        next_cursor = encode_queue_cursor(last.review_priority, last.id)
    return ReviewPage(items=items, next_cursor=next_cursor)


def write_label(
    session: Session,
    transcript_id: uuid.UUID,
    data: LabelWrite,
    reviewer: Reviewer,
    taxonomy: Taxonomy,
) -> LabelRead:
    """Store a person's answer for a call as its new current label; the call's answer, the
    analytics and the queue follow.

    NotFoundError: no such call. InvalidRequestError: a reason the taxonomy does not have.
    ConflictError: the call is not extracted yet, was extracted with another taxonomy, or has
    a newer label than `data.version` (another reviewer got there first)."""
    transcript = labels_db.lock_transcript(session, transcript_id)
    if transcript is None:
        raise NotFoundError(f"no transcript {transcript_id}", loc=("path", "transcript_id"))
    if data.reason not in taxonomy.codes:
        raise InvalidRequestError(
            f"reason {data.reason!r} is not a code of the taxonomy {taxonomy.version}; "
            f"use one of: {', '.join(taxonomy.codes)}",
            loc=("body", "reason"),
        )
    extraction = results_db.current_extraction(session, transcript_id)
    if extraction is None:
        raise ConflictError(
            f"transcript {transcript_id} is {transcript.status}: label it once it is extracted"
        )
    if extraction.taxonomy_version != taxonomy.version:
        raise ConflictError(
            f"transcript {transcript_id} was extracted with taxonomy "
            f"{extraction.taxonomy_version}; this API labels with {taxonomy.version}"
        )
    current = labels_db.current_label(session, transcript_id)
    version = 0 if current is None else current.version
    if data.version != version:
        raise _stale(transcript_id, data.version, current)
    label = Label(
        id=uuid.uuid4(),
        transcript_id=transcript_id,
        version=version + 1,
        is_current=True,
        reason=data.reason,
        product=data.product,
        product_key=product_key(data.product),
        note=data.note,
        taxonomy_version=taxonomy.version,
        labelled_by=reviewer.name,
        key_id=reviewer.key_id,
        extraction_id=extraction.id,
        machine_status=extraction.status,
        machine_reason=extraction.reason,
        machine_product=extraction.product,
        machine_confidence=extraction.confidence,
    )
    try:
        labels_db.add_label(session, label)
    except IntegrityError:
        # Another reviewer's label of the same version committed between our read and our
        # write (SQLite: PostgreSQL's row lock makes the check above see it). The session is
        # rolled back at the boundary.
        raise ConflictError(
            f"transcript {transcript_id} was labelled by someone else at the same moment: "
            "read its label and send its version to replace it",
            loc=("body", "version"),
        ) from None
    return label_read(label)


def _stale(transcript_id: uuid.UUID, expected: int, current: Label | None) -> ConflictError:
    if current is None:
        return ConflictError(
            f"transcript {transcript_id} has no label: send version 0, not {expected}",
            loc=("body", "version"),
        )
    return ConflictError(
        f"transcript {transcript_id} has label version {current.version} "
        f"({current.reason!r}, by {current.labelled_by}), not {expected}: read it and send "
        f"version {current.version} to replace it",
        loc=("body", "version"),
    )


def label_history(session: Session, transcript_id: uuid.UUID) -> LabelHistory:
    """Every label of the call, oldest first (empty: none). NotFoundError: no such call."""
    if transcripts_db.get_transcript(session, transcript_id) is None:
        raise NotFoundError(f"no transcript {transcript_id}", loc=("path", "transcript_id"))
    return LabelHistory(
        items=[label_read(label) for label in labels_db.label_history(session, transcript_id)]
    )
