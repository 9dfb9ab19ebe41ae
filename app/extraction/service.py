"""run_extraction(): claim a transcript, run the pipeline, store the outcome. Idempotent."""

from __future__ import annotations

import contextvars
import logging
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Executor

from app import metrics
from app.extraction.pipeline import ExtractionOutcome
from app.extraction.store import ExtractionStore
from app.logs import transcript_id as logged_transcript_id

log = logging.getLogger(__name__)

# (text, language as submitted) -> outcome
Extractor = Callable[[str, str | None], ExtractionOutcome]
# What run_extraction() answers for a call it did not start because its worker is stopping:
# the call is still queued, its message must go back to the broker.
NOT_STARTED = "not_started"


def run_extraction(
    store: ExtractionStore,
    transcript_id: uuid.UUID,
    extractor: Extractor,
    *,
    lease_s: int,
    taxonomy_version: str,
    should_stop: Callable[[], bool] | None = None,
) -> str:
    """Extract one transcript and store the result; returns what happened.

    The model call happens between two short transactions, never inside one: the first claims
    the transcript (skipped if finished or leased by another worker), the second stores the
    outcome only if our claim still holds. A redelivered task therefore does nothing. A call
    queued for another taxonomy than `taxonomy_version` (the extractor's) is never claimed.
    Once `should_stop()` says so, no call is started (NOT_STARTED).
    """
    if should_stop is not None and should_stop():
        return NOT_STARTED
    claim = store.claim(transcript_id, lease_s, taxonomy_version=taxonomy_version)
    if claim is None:
        log.info("transcript not claimable, skipping", extra={"transcript_id": str(transcript_id)})
        metrics.SKIPPED.labels("not_claimable").inc()
        return "skipped"

    try:
        outcome = extractor(claim.text, claim.language)
    except BaseException:
        store.abandon(claim)
        raise

    if not store.store(claim, outcome):
        log.warning(
            "lease lost before the result was stored", extra={"transcript_id": str(transcript_id)}
        )
        metrics.SKIPPED.labels("lease_lost").inc()
        return "lease_lost"
    _count(outcome)
    log.info(
        "extraction stored",
        extra={
            "transcript_id": str(transcript_id),
            "status": outcome.status,
            "latency_ms": outcome.latency_ms,
            "error_kind": outcome.error_kind,
        },
    )
    return outcome.status


def run_extractions(
    store: ExtractionStore,
    transcript_ids: Sequence[uuid.UUID],
    extractor: Extractor,
    *,
    lease_s: int,
    taxonomy_version: str,
    calls: Executor | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[str]:
    """run_extraction() for each transcript: at once on `calls` where given (an API backend),
    else one after the other. Each is claimed only when it starts: a lease never runs out
    while its call waits for a turn, and none starts once `should_stop()` says so."""

    def one(transcript_id: uuid.UUID) -> str:
        logged_transcript_id.set(str(transcript_id))
        return run_extraction(
            store,
            transcript_id,
            extractor,
            lease_s=lease_s,
            taxonomy_version=taxonomy_version,
            should_stop=should_stop,
        )

    # Each call in a copy of this context: the request id goes along, into every log line.
    if calls is None or len(transcript_ids) == 1:
        return [contextvars.copy_context().run(one, i) for i in transcript_ids]
    futures = [calls.submit(contextvars.copy_context().run, one, i) for i in transcript_ids]
    return [future.result() for future in futures]


def _count(outcome: ExtractionOutcome) -> None:
    """The stored outcome in the Prometheus counters."""
    backend, model = outcome.backend, outcome.model
    metrics.CALLS.labels(outcome.status, backend, model).inc()
    metrics.LATENCY.labels(backend, model).observe(outcome.latency_ms / 1000)
    if outcome.prompt_tokens:
        metrics.TOKENS.labels(backend, model, "prompt").inc(outcome.prompt_tokens)
    if outcome.completion_tokens:
        metrics.TOKENS.labels(backend, model, "completion").inc(outcome.completion_tokens)
    if outcome.error_kind:
        metrics.FAILURES.labels(outcome.backend, outcome.error_kind).inc()
