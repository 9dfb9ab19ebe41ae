"""Re-extraction: calls already stored extracted again, on the batch queue, with the model the
workers run now and the API's taxonomy (a new model, or a new taxonomy version applied to the
last month of calls). Earlier extractions are kept (not current); people's labels are never
overwritten; the same job submitted twice extracts once."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from app.db import reextractions as jobs_db
from app.db.models import Reextraction
from app.db.results import ExtractionFilter
from app.db.session import after_commit
from app.errors import InvalidRequestError, NotFoundError
from app.jobs.queue import TaskQueue
from app.results.service import check_range

MAX_CALLS = 1_000_000


@dataclass(frozen=True)
class ReextractionFilter:
    """Which stored calls to extract again (None: any): by the time of the call, source, the
    answer's reason, the model that answered, the taxonomy it was extracted with, and at most
    this confidence (the unsure ones); `limit` the newest first."""

    since: datetime | None = None
    until: datetime | None = None
    source: str | None = None
    reason: str | None = None
    model: str | None = None
    taxonomy_version: str | None = None
    max_confidence: float | None = None
    limit: int = 10_000

    def key(self, target_taxonomy: str, target_model: str | None) -> str:
        """The job's identity: the same filter, for the same taxonomy and model, is the same
        job (submitted again: the job already made, nothing extracted twice)."""
        values = {
            name: (value.isoformat() if isinstance(value, datetime) else value)
            for name, value in asdict(self).items()
        }
        text = json.dumps([values, target_taxonomy, target_model], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class ReextractionState:
    job: Reextraction
    created: bool  # False: the same job was already there
    done: int
    queued: int
    running: int

    @property
    def finished(self) -> bool:
        return self.queued == 0 and self.running == 0


def create_reextraction(
    session: Session,
    queue: TaskQueue,
    filters: ReextractionFilter,
    *,
    taxonomy_version: str,
    model: str | None,
    by: str,
) -> ReextractionState:
    """Choose the calls, record the job, put them back in the batch queue (sent after the
    commit). `model`: what the workers run now (the promoted adapter), part of the job's key."""
    check_range(filters.since, filters.until)
    if not 1 <= filters.limit <= MAX_CALLS:
        raise InvalidRequestError(f"limit must be between 1 and {MAX_CALLS}", loc=("body", "limit"))
    key = filters.key(taxonomy_version, model)
    existing = jobs_db.find_by_key(session, key)
    if existing is not None:
        return state(session, existing, created=False)
    now = datetime.now(UTC)
    chosen = jobs_db.choose_calls(
        session,
        ExtractionFilter(
            reason=filters.reason,
            since=filters.since,
            until=filters.until,
            source=filters.source,
            taxonomy_version=filters.taxonomy_version,
            max_confidence=filters.max_confidence,
        ),
        filters.model,
        filters.limit,
    )
    job = Reextraction(
        id=uuid.uuid4(),
        key=key,
        filters={
            name: (value.isoformat() if isinstance(value, datetime) else value)
            for name, value in asdict(filters).items()
        },
        taxonomy_version=taxonomy_version,
        model=model,
        calls=len(chosen),
        created_by=by,
        created_at=now,
    )
    jobs_db.add(session, job)
    jobs_db.add_items(session, job.id, chosen)
    requeued = jobs_db.requeue(session, chosen, taxonomy_version, queue.batch, now)

    def send() -> None:
        queue.send_extractions(requeued, queue.batch)  # lost: the reconciler re-sends them

    after_commit(session, send)
    return ReextractionState(job, True, 0, len(requeued), 0)


def state(session: Session, job: Reextraction, *, created: bool = False) -> ReextractionState:
    counts = jobs_db.progress(session, job)
    return ReextractionState(job, created, counts["done"], counts["queued"], counts["running"])


def get_state(session: Session, job_id: uuid.UUID) -> ReextractionState:
    job = jobs_db.get(session, job_id)
    if job is None:
        raise NotFoundError(f"no re-extraction {job_id}", loc=("path", "reextraction_id"))
    return state(session, job)
