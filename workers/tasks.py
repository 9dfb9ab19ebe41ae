"""Thin tasks: take an id, call the service. No business logic here."""

from __future__ import annotations

import uuid
from typing import Any

from celery import Task
from celery.exceptions import Reject
from sqlalchemy.exc import InterfaceError, OperationalError

from app.extraction.service import NOT_STARTED, run_extraction, run_extractions
from app.jobs.queue import DISPATCH_TASK, EXTRACT_MANY_TASK, EXTRACT_TASK, TaskQueue
from app.logs import request_id
from app.logs import transcript_id as logged_transcript_id
from workers.celery_app import celery_app, stopping_now, worker_runtime

# The extraction tasks: acknowledged once the result is stored; database down: back off and
# try again instead of losing the message.
EXTRACTION_TASK_OPTIONS: dict[str, Any] = {
    "bind": True,
    "acks_late": True,
    "reject_on_worker_lost": True,
    "ignore_result": True,
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": 2,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": None,
}


@celery_app.task(name=EXTRACT_TASK, **EXTRACTION_TASK_OPTIONS)
def extract_transcript(self: Task, transcript_id: str) -> str:
    request_id.set(getattr(self.request, "callx_request_id", None))
    logged_transcript_id.set(transcript_id)
    runtime = worker_runtime()
    extractor = runtime.current_extractor()
    outcome = run_extraction(
        runtime.store,
        uuid.UUID(transcript_id),
        extractor,
        lease_s=runtime.settings.extraction.lease_s,
        taxonomy_version=extractor.taxonomy.version,
        should_stop=stopping_now,
    )
    return _requeue_if_not_started([outcome])[0]


@celery_app.task(name=EXTRACT_MANY_TASK, **EXTRACTION_TASK_OPTIONS)
def extract_transcripts(self: Task, transcript_ids: list[str]) -> list[str]:
    """Several transcripts of a batch in one message (TaskQueue.send_extractions). Retried
    whole on a database outage: those already stored are skipped."""
    request_id.set(getattr(self.request, "callx_request_id", None))
    runtime = worker_runtime()
    extractor = runtime.current_extractor()
    outcomes = run_extractions(
        runtime.store,
        [uuid.UUID(i) for i in transcript_ids],
        extractor,
        lease_s=runtime.settings.extraction.lease_s,
        taxonomy_version=extractor.taxonomy.version,
        calls=runtime.calls,
        should_stop=stopping_now,
    )
    return _requeue_if_not_started(outcomes)


def _requeue_if_not_started(outcomes: list[str]) -> list[str]:
    """The worker is stopping with calls of this message not started: the message goes back
    to its queue (those done are skipped when it comes again)."""
    if NOT_STARTED in outcomes:
        raise Reject("the worker is stopping", requeue=True)
    return outcomes


@celery_app.task(bind=True, name=DISPATCH_TASK, acks_late=True, ignore_result=True)
def dispatch_extractions(self: Task, transcript_ids: list[str], queue: str) -> int:
    """Fan a chunk of ids out into one extraction message each (re-sending is harmless)."""
    request_id.set(getattr(self.request, "callx_request_id", None))
    runtime = worker_runtime()
    TaskQueue(celery_app, runtime.settings).send_extractions(transcript_ids, queue, fan_out=False)
    return len(transcript_ids)
