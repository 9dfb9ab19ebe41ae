"""Accepting calls: submit_transcript() and submit_batch() validate, store and queue after commit
in the caller's session (they never commit); ingest_batch_body() is the whole of a batch
request (parse, limits, its own session scope), the same for the API and any other caller."""

from __future__ import annotations

import gc
import hashlib
import itertools
import json
import logging
import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from app import metrics
from app.config import DEFAULT_MAX_METADATA_BYTES
from app.db import batches as batches_db
from app.db import transcripts as transcripts_db
from app.db.models import Batch, Transcript
from app.db.session import after_commit, session_scope
from app.errors import ConflictError, NotFoundError, PayloadTooLargeError
from app.ingest.parsing import BodyError, RawRecord, parse_batch_body
from app.jobs.queue import TaskQueue
from schemas.api import BatchCreated, BatchItemError, BatchRead, TranscriptCreate

log = logging.getLogger(__name__)


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def metadata_bytes(metadata: dict[str, Any]) -> int:
    """The size of a call's metadata: compact JSON, in UTF-8."""
    if not metadata:
        return 2
    text = json.dumps(metadata, ensure_ascii=False, separators=(",", ":"))
    return len(text.encode("utf-8", "surrogatepass"))


def limit_errors(
    data: TranscriptCreate, max_text_chars: int, max_metadata_bytes: int
) -> list[tuple[str, str]]:
    """The configured limits `data` is over, as (field, what)."""
    problems = []
    if len(data.text) > max_text_chars:
        problems.append(("text", f"{len(data.text)} characters, the limit is {max_text_chars}"))
    size = metadata_bytes(data.metadata)
    if size > max_metadata_bytes:
        problems.append(("metadata", f"{size} bytes as JSON, the limit is {max_metadata_bytes}"))
    return problems


def submit_transcript(
    session: Session,
    data: TranscriptCreate,
    queue: TaskQueue,
    max_text_chars: int,
    *,
    taxonomy_version: str,
    max_metadata_bytes: int = DEFAULT_MAX_METADATA_BYTES,
) -> tuple[Transcript, bool]:
    """Store and queue one transcript for `taxonomy_version` (only a worker with that taxonomy
    extracts it). Returns (transcript, created).

    The same (source, external_id) with the same text returns the existing record;
    with a different text it is a ConflictError; a text or metadata over its limit,
    PayloadTooLargeError.
    """
    problems = limit_errors(data, max_text_chars, max_metadata_bytes)
    if problems:
        raise PayloadTooLargeError(
            "; ".join(f"{field}: {what}" for field, what in problems),
            loc=("body", problems[0][0]),
        )
    row = _row(data, batch_id=None, queue=queue.interactive, taxonomy_version=taxonomy_version)
    # Insert first: a new call (the usual case) costs one statement; only a key that is
    # already there (or being inserted by a concurrent request: ON CONFLICT waits for it)
    # is looked up.
    inserted = transcripts_db.insert_transcripts_skipping_duplicates(session, [row])
    if not inserted:
        assert data.external_id is not None
        existing = transcripts_db.find_transcript(session, data.source, data.external_id)
        assert existing is not None
        return _same_or_conflict(existing, row["text_sha256"]), False
    _enqueue_after_commit(session, queue, [row["id"]], queue.interactive)
    # What was just inserted, without reading it back.
    return Transcript(**row), True


def _same_or_conflict(existing: Transcript, digest: str) -> Transcript:
    if existing.text_sha256 != digest:
        raise ConflictError(
            f"external_id {existing.external_id!r} of source {existing.source!r} was already "
            "submitted with a different text; use a new external_id for a different call",
            loc=("body", "external_id"),
        )
    return existing


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a batch is parsed and stored.

    A 10,000-call batch makes some 100,000 short-lived objects (records, models, rows), freed
    by reference counting when it is done; meanwhile they would set off a hundred collections,
    full ones over the whole heap among them: a quarter of the batch's CPU time. Process-wide
    (other threads run without collections meanwhile, which only delays them); turned back on
    at the end unless it was already off.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def ingest_batch_body(
    body: bytes,
    content_type: str,
    sessions: sessionmaker[Session],
    queue: TaskQueue,
    *,
    max_items: int,
    max_text_chars: int,
    taxonomy_version: str,
    max_metadata_bytes: int = DEFAULT_MAX_METADATA_BYTES,
) -> BatchCreated:
    """A batch request's body (JSON array, NDJSON or CSV) parsed, checked against the limits,
    then stored in a transaction of its own: no connection is held while it is parsed.
    Blocking: call it from a worker thread."""
    with gc_paused():
        records = parse_batch_body(body, content_type)
        if not records:
            raise BodyError("the batch holds no records: send at least one")
        if len(records) > max_items:
            raise PayloadTooLargeError(
                f"batch of {len(records)} records; the limit is {max_items} per request: split it",
                loc=("body",),
            )
        with session_scope(sessions) as session:
            return submit_batch(
                session,
                records,
                queue,
                max_text_chars,
                taxonomy_version=taxonomy_version,
                max_metadata_bytes=max_metadata_bytes,
            )


def submit_batch(
    session: Session,
    records: Sequence[RawRecord],
    queue: TaskQueue,
    max_text_chars: int,
    *,
    taxonomy_version: str,
    max_metadata_bytes: int = DEFAULT_MAX_METADATA_BYTES,
) -> BatchCreated:
    """Validate every record on its own; store the good ones in this transaction, queue them
    after commit, and report the bad ones with their position."""
    errors: list[BatchItemError] = []
    batch_id = uuid.uuid4()
    rows: list[dict[str, Any]] = []
    records_by_row: list[RawRecord] = []
    duplicates = 0

    def new_rows() -> Iterator[dict[str, Any]]:
        """The rows to insert, one by one as the records are validated (so that PostgreSQL
        stores the first ones while the next are checked). Within the batch, a repeated key
        with the same text is a duplicate, with another an error."""
        nonlocal duplicates
        seen: dict[tuple[str, str], str] = {}
        ids = _uuid4s(len(records))
        for record, row_id in zip(records, ids, strict=True):
            problems, data = _validate(record, max_text_chars, max_metadata_bytes)
            if problems:
                errors.append(_item_error(record, problems))
                continue
            assert data is not None
            row = _row(
                data,
                batch_id=batch_id,
                queue=queue.batch,
                taxonomy_version=taxonomy_version,
                row_id=row_id,
            )
            if data.external_id is not None:
                key = (data.source, data.external_id)
                if key in seen:
                    if seen[key] == row["text_sha256"]:
                        duplicates += 1
                    else:
                        errors.append(_item_error(record, [_conflict_message(data.external_id)]))
                    continue
                seen[key] = row["text_sha256"]
            rows.append(row)
            records_by_row.append(record)
            yield row

    # Against the database: the new rows in one COPY (PostgreSQL) that fails if any key is
    # already there; then, or elsewhere, in one INSERT that skips the keys already there. Only
    # those (rare) are looked up, to tell a duplicate from a conflict.
    accepted_ids: list[uuid.UUID] = []
    pending = new_rows()
    first = next(pending, None)
    if first is not None:
        batch = Batch(id=batch_id, received=len(records), accepted=0, duplicates=0, rejected=0)
        batches_db.add_batch(session, batch)
        stream = itertools.chain([first], pending)
        if transcripts_db.copy_new_transcripts(session, stream):
            accepted_ids = [r["id"] for r in rows]
        else:
            for _ in stream:  # validate what the COPY did not take
                pass
            inserted = transcripts_db.insert_transcripts_skipping_duplicates(session, rows)
            accepted_ids = [r["id"] for r in rows if r["id"] in inserted]
            clashes = [
                (r, rec)
                for r, rec in zip(rows, records_by_row, strict=True)
                if r["id"] not in inserted
            ]
            if clashes:
                known = transcripts_db.find_transcript_hashes(
                    session, {(r["source"], r["external_id"]) for r, _ in clashes}
                )
                for row, record in clashes:
                    _, digest = known[(row["source"], row["external_id"])]
                    if digest == row["text_sha256"]:
                        duplicates += 1
                    else:
                        errors.append(_item_error(record, [_conflict_message(row["external_id"])]))
        if accepted_ids:
            batch.accepted, batch.duplicates, batch.rejected = (
                len(accepted_ids),
                duplicates,
                len(errors),
            )
            _enqueue_after_commit(session, queue, accepted_ids, queue.batch)
        else:
            batches_db.delete_batch(session, batch)
    errors.sort(key=lambda e: e.index)
    metrics.REJECTED.inc(len(errors))
    stored_ids: list[uuid.UUID | None] = [None] * len(records)
    accepted = set(accepted_ids)
    for row, record in zip(rows, records_by_row, strict=True):
        if row["id"] in accepted:
            stored_ids[record.index] = row["id"]
    return BatchCreated(
        id=batch_id if accepted_ids else None,
        received=len(records),
        accepted=len(accepted_ids),
        duplicates=duplicates,
        rejected=len(errors),
        errors=errors,
        transcript_ids=stored_ids,
    )


def batch_progress(session: Session, batch_id: uuid.UUID) -> BatchRead:
    batch = batches_db.get_batch(session, batch_id)
    if batch is None:
        raise NotFoundError(f"no batch {batch_id}", loc=("path", "batch_id"))
    return _batch_read(batch, batches_db.batch_status_counts(session, batch_id))


def recent_batches(session: Session, limit: int, before: datetime | None = None) -> list[BatchRead]:
    """The latest batches with their progress, the newest first (received before `before`)."""
    batches = batches_db.recent_batches(session, limit, before)
    counts = batches_db.status_counts_of(session, [b.id for b in batches])
    return [_batch_read(batch, counts[batch.id]) for batch in batches]


def _batch_read(batch: Batch, found: dict[str, int]) -> BatchRead:
    counts = {status: 0 for status in ("queued", "running", "succeeded", "failed")}
    counts.update(found)
    return BatchRead(
        id=batch.id,
        created_at=batch.created_at,
        received=batch.received,
        accepted=batch.accepted,
        duplicates=batch.duplicates,
        rejected=batch.rejected,
        counts=counts,  # type: ignore[arg-type]
        done=counts["queued"] == 0 and counts["running"] == 0,
    )


def _conflict_message(external_id: str) -> str:
    return f"external_id {external_id!r} was already submitted with a different text"


def _validate(
    record: RawRecord, max_text_chars: int, max_metadata_bytes: int
) -> tuple[list[str], TranscriptCreate | None]:
    if record.error is not None:
        return [record.error], None
    if not isinstance(record.data, dict):
        return [f"expected a JSON object, found {type(record.data).__name__}"], None
    try:
        data = TranscriptCreate.model_validate(record.data)
    except ValidationError as exc:
        return [_format_error(e) for e in exc.errors(include_url=False)], None
    problems = limit_errors(data, max_text_chars, max_metadata_bytes)
    return [f"{field}: {what}" for field, what in problems], data


def _format_error(error: Any) -> str:
    location = ".".join(str(part) for part in error["loc"]) or "record"
    return f"{location}: {error['msg'].removeprefix('Value error, ')}"


def _item_error(record: RawRecord, problems: list[str]) -> BatchItemError:
    data = record.data if isinstance(record.data, dict) else {}
    external_id = data.get("external_id", data.get("id"))
    return BatchItemError(
        index=record.index,
        line=record.line,
        external_id=external_id if _is_text(external_id) else None,
        errors=problems,
    )


def _is_text(value: object) -> bool:
    """A string that can be echoed back: JSON allows lone surrogates ("\\ud800"), UTF-8 not."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _uuid4s(n: int) -> list[uuid.UUID]:
    """n random (version 4) UUIDs from one read of the system's random source: uuid4() reads
    it once per call, a system call each."""
    data = os.urandom(16 * n)
    return [uuid.UUID(bytes=data[i : i + 16], version=4) for i in range(0, 16 * n, 16)]


def _row(
    data: TranscriptCreate,
    *,
    batch_id: uuid.UUID | None,
    queue: str,
    taxonomy_version: str,
    row_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "id": row_id or uuid.uuid4(),
        "source": data.source,
        "external_id": data.external_id,
        "text": data.text,
        "text_sha256": text_digest(data.text),
        "language": data.language,
        "occurred_at": data.occurred_at or now,
        "metadata_": data.metadata,
        "batch_id": batch_id,
        "queue": queue,
        "taxonomy_version": taxonomy_version,
        "status": "queued",
        "runs": 0,
        "created_at": now,
        "updated_at": now,
    }


def _enqueue_after_commit(
    session: Session, queue: TaskQueue, ids: list[uuid.UUID], queue_name: str
) -> None:
    def send() -> None:
        metrics.SUBMITTED.labels(queue_name).inc(len(ids))
        try:
            queue.send_extractions(ids, queue_name)
        except Exception:
            # The rows are committed as queued: the reconciler sends them again later.
            log.exception(
                "could not reach the broker; the reconciler will re-send", extra={"count": len(ids)}
            )

    after_commit(session, send)
