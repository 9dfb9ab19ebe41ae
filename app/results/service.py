"""Results as the API shows them. Functions take the session; none of them commits."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.db import analytics as analytics_db
from app.db import labels as labels_db
from app.db import results as results_db
from app.db import transcripts as transcripts_db
from app.db.analytics import ALL, Slice
from app.db.models import Extraction, Label, Transcript
from app.db.results import ExtractionFilter
from app.db.session import session_scope
from app.errors import InvalidRequestError, NotFoundError
from app.results.cursor import decode_cursor, encode_cursor
from schemas.api import (
    Answer,
    ExtractionListItem,
    ExtractionPage,
    ExtractionRead,
    LabelRead,
    MachineAnswer,
    ProductCount,
    ProductCounts,
    ReviewState,
    TranscriptRead,
)
from schemas.extraction import product_key


def transcript_view(
    session: Session, transcript: Transcript, extraction: Extraction | None = None
) -> TranscriptRead:
    """A transcript with its current extraction (read here when it has one and none is given)."""
    if extraction is None and transcript.status in ("succeeded", "failed"):
        extraction = results_db.current_extraction(session, transcript.id)
    label = labels_db.current_label(session, transcript.id)
    return TranscriptRead(
        id=transcript.id,
        external_id=transcript.external_id,
        source=transcript.source,
        status=transcript.status,  # type: ignore[arg-type]
        language=transcript.language,
        occurred_at=transcript.occurred_at,
        batch_id=transcript.batch_id,
        metadata=transcript.metadata_,
        extraction=extraction_read(extraction),
        label=None if label is None else label_read(label),
        answer=None if extraction is None else answer_of(extraction),
    )


def get_transcript(session: Session, transcript_id: uuid.UUID) -> TranscriptRead:
    transcript = transcripts_db.get_transcript(session, transcript_id)
    if transcript is None:
        raise NotFoundError(f"no transcript {transcript_id}", loc=("path", "transcript_id"))
    return transcript_view(session, transcript)


def find_transcript(session: Session, source: str, external_id: str) -> TranscriptRead:
    """The transcript a call-centre system knows by (source, external_id)."""
    transcript = transcripts_db.find_transcript(session, source, external_id)
    if transcript is None:
        raise NotFoundError(
            f"no transcript with source {source!r} and external_id {external_id!r}",
            loc=("query", "external_id"),
        )
    return transcript_view(session, transcript)


def list_extractions(
    session: Session,
    filters: ExtractionFilter,
    *,
    page_size: int,
    cursor: str | None,
) -> ExtractionPage:
    """Current extractions, newest call first, one page after `cursor`. `filters.product` is
    a product as written (folded here)."""
    check_range(filters.since, filters.until)
    if (
        filters.min_confidence is not None
        and filters.max_confidence is not None
        and filters.min_confidence > filters.max_confidence
    ):
        raise InvalidRequestError("min_confidence must not be above max_confidence")
    filters = replace(filters, product=product_key(filters.product))
    after = decode_cursor(cursor) if cursor else None
    rows = results_db.list_extractions(session, filters, page_size + 1, after)
    labelled = [e.transcript_id for e, _ in rows[:page_size] if e.answer_by == "label"]
    labels = labels_db.current_labels(session, labelled)
    items = [
        ExtractionListItem(
            transcript_id=t.id,
            external_id=t.external_id,
            source=t.source,
            language=t.language,
            occurred_at=e.occurred_at,
            batch_id=t.batch_id,
            metadata=t.metadata_,
            extraction=extraction_read(e),  # type: ignore[arg-type]
            label=label_read(labels[t.id]) if t.id in labels else None,
            answer=answer_of(e),
        )
        for e, t in rows[:page_size]
    ]
    next_cursor = None
    if len(rows) > page_size:
        last = rows[page_size - 1][0]
        next_cursor = encode_cursor(last.occurred_at, last.id)
    return ExtractionPage(items=items, next_cursor=next_cursor)


def reason_counts(
    session: Session,
    bucket: str,
    since: datetime | None,
    until: datetime | None,
    where: Slice = ALL,
) -> dict[str, Any]:
    """Calls per reason per bucket, as the plain JSON of schemas.api.ReasonCounts.

    A year of days is thousands of items: built once as plain JSON (the shape of ReasonCounts,
    which documents it) rather than validated twice as models."""
    check_range(since, until)
    rows = analytics_db.reason_counts(session, bucket, since, until, where)
    items = [{"bucket": utc_iso(_as_datetime(b)), "reason": r, "count": c} for b, r, c in rows]
    return {"bucket": bucket, "items": items}


def product_counts(
    session: Session,
    reason: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    where: Slice = ALL,
) -> ProductCounts:
    """The most frequent products, with their calls per reason."""
    check_range(since, until)
    rows = analytics_db.product_counts(session, reason, since, until, limit, where)
    return ProductCounts(items=[ProductCount(product=p, total=t, by_reason=r) for p, t, r in rows])


def calls_by_status(session: Session) -> dict[str, int]:
    """Transcripts per status (the /metrics gauge)."""
    return transcripts_db.count_by_status(session)


def check_range(since: datetime | None, until: datetime | None) -> None:
    if since is not None and until is not None and since >= until:
        raise InvalidRequestError("since must be before until", loc=("query", "since"))


def extraction_read(extraction: Extraction | None) -> ExtractionRead | None:
    """The model's answer as the API shows it, with the review decision stored with it."""
    if extraction is None:
        return None
    read = ExtractionRead.model_validate(extraction)
    if extraction.review_threshold is not None:
        read.review = ReviewState(
            cause=extraction.review_cause,  # type: ignore[arg-type]
            in_audit=extraction.in_audit,
            threshold=extraction.review_threshold,
            audit_rate=extraction.audit_rate,
            waiting=extraction.review_priority is not None,
        )
    return read


def label_read(label: Label) -> LabelRead:
    return LabelRead(
        transcript_id=label.transcript_id,
        version=label.version,
        current=label.is_current,
        reason=label.reason,
        product=label.product,
        note=label.note,
        taxonomy_version=label.taxonomy_version,
        labelled_by=label.labelled_by,
        labelled_at=label.created_at,
        replaces=MachineAnswer(
            extraction_id=label.extraction_id,
            status=label.machine_status,
            reason=label.machine_reason,
            product=label.machine_product,
            confidence=label.machine_confidence,
        ),
    )


def answer_of(extraction: Extraction) -> Answer:
    """The answer that counts, as stored with the current extraction."""
    return Answer(
        reason=extraction.answer_reason,
        product=extraction.answer_product,
        by=extraction.answer_by,  # type: ignore[arg-type]
    )


def _as_datetime(value: object) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    return datetime.fromisoformat(str(value))


def utc_iso(value: datetime) -> str:
    """A time as ISO 8601 in UTC, with a Z."""
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class CallDetail:
    """Everything callx knows of one call: the transcript, every extraction attempt (the
    first first) and every label (the oldest first)."""

    call: TranscriptRead
    text: str
    attempts: list[ExtractionRead]
    labels: list[LabelRead]


def call_detail(session: Session, transcript_id: uuid.UUID) -> CallDetail:
    transcript = transcripts_db.get_transcript(session, transcript_id)
    if transcript is None:
        raise NotFoundError(f"no transcript {transcript_id}", loc=("path", "transcript_id"))
    attempts = results_db.extraction_attempts(session, transcript_id)
    current = next((e for e in attempts if e.is_current), None)
    return CallDetail(
        call=transcript_view(session, transcript, current),
        text=transcript.text,
        attempts=[read for read in map(extraction_read, attempts) if read is not None],
        labels=[label_read(label) for label in labels_db.label_history(session, transcript_id)],
    )


# The queues' depths are counted up to this many (a deeper queue reads "over 10,000"): a
# count that stays cheap however deep the queue gets.
QUEUE_COUNT_CAP = 10_000


@dataclass(frozen=True)
class CallCounts:
    """The overview's counts besides the analytics: failed calls in the range, calls waiting
    for a model (queued or running) and for a person (the review queue), now; the waiting
    ones up to `cap` + 1 (more than `cap`: "over cap")."""

    failed: int
    waiting_for_model: int
    waiting_for_review: int
    cap: int = QUEUE_COUNT_CAP


def call_counts(
    session: Session,
    since: datetime | None,
    until: datetime | None,
    source: str | None,
    taxonomy_version: str | None,
) -> CallCounts:
    check_range(since, until)
    return CallCounts(
        failed=results_db.count_failed(session, since, until, source),
        waiting_for_model=transcripts_db.count_waiting(session, QUEUE_COUNT_CAP),
        waiting_for_review=results_db.count_waiting_for_review(
            session, taxonomy_version, QUEUE_COUNT_CAP
        ),
    )


def iter_extractions(
    sessions: sessionmaker[Session], filters: ExtractionFilter, *, chunk: int = 1000
) -> Iterator[ExtractionListItem]:
    """Every current extraction in the filter, newest call first, read a page at a time, each
    page in its own short transaction (a download of a million calls holds no connection
    between pages, and the keyset cursor keeps the pages in step)."""
    cursor: str | None = None
    while True:
        with session_scope(sessions) as session:
            page = list_extractions(session, filters, page_size=chunk, cursor=cursor)
        yield from page.items
        if page.next_cursor is None:
            return
        cursor = page.next_cursor
