"""extract(): one transcript in, one outcome out. The same code behind REST, batch and CLI."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.extraction.retry import RetryPolicy
from app.extraction.truncation import fit_transcript
from app.llm.base import Backend, ExtractionRequest
from app.llm.errors import BackendError, InvalidAnswerError, TransientBackendError
from app.llm.prompts import PROMPT_VERSION
from app.metrics import RETRIES
from schemas.taxonomy import Taxonomy

log = logging.getLogger(__name__)
DEFAULT_RETRY = RetryPolicy()


@dataclass(frozen=True)
class ExtractionOutcome:
    """The result of one extraction, successful or not, with what it cost."""

    status: str  # "succeeded" | "failed"
    product: str | None
    reason: str | None
    confidence: float | None
    backend: str
    model: str
    prompt_version: str
    taxonomy_version: str
    latency_ms: int
    prompt_tokens: int | None
    completion_tokens: int | None
    attempts: int
    truncated: bool
    raw_answer: str | None = None
    error: str | None = None
    error_kind: str | None = None
    confidence_calibrated: bool = False
    product_confidence: float | None = None
    adapter_sha256: str | None = None  # the LoRA adapter that answered, where there is one
    reader_sha256: str | None = None  # the reader the list's definitions are read with, if any

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


def extract(
    text: str,
    *,
    language: str | None = None,
    backend: Backend,
    taxonomy: Taxonomy,
    retry: RetryPolicy = DEFAULT_RETRY,
    keep_head_ratio: float = 0.4,
    sleep: Callable[[float], None] = time.sleep,
) -> ExtractionOutcome:
    """Fit the transcript to the backend's context, ask the backend, retry transient failures.
    `language`: the call's language as submitted, where it is known (a list may define its
    reasons in several languages)."""
    started = time.perf_counter()
    common: dict[str, Any] = {
        "backend": backend.name,
        "model": backend.model,
        "adapter_sha256": getattr(backend, "adapter_sha256", None),
        "reader_sha256": _reader_sha256(backend, taxonomy),
        "prompt_version": PROMPT_VERSION,
        "taxonomy_version": taxonomy.version,
    }
    try:
        fitted = fit_transcript(
            text, backend.transcript_budget(taxonomy), backend.count_tokens, keep_head_ratio
        )
    except ValueError as exc:
        error = BackendError(str(exc))
        error.kind = "context_too_small"
        return _failure(common, started, 0, False, error, None)
    request = ExtractionRequest(transcript=fitted.text, taxonomy=taxonomy, language=language)
    model_calls = 0
    for attempt in range(1, retry.attempts + 1):
        try:
            answer = backend.extract(request)
        except TransientBackendError as exc:
            model_calls += 1
            if attempt == retry.attempts:
                return _failure(common, started, model_calls, fitted.truncated, exc, None)
            RETRIES.labels(backend.name, exc.kind).inc()
            delay = retry.delay(attempt, exc.retry_after_s)
            log.warning(
                "transient backend error, retrying",
                extra={"error_kind": exc.kind, "attempt": attempt, "delay_s": round(delay, 2)},
            )
            sleep(delay)
            continue
        except InvalidAnswerError as exc:
            return _failure(
                common, started, model_calls + exc.attempts, fitted.truncated, exc, exc.raw_answer
            )
        except BackendError as exc:
            return _failure(common, started, model_calls + 1, fitted.truncated, exc, None)
        model_calls += answer.attempts
        return ExtractionOutcome(
            status="succeeded",
            product=answer.answer.product,
            reason=answer.answer.reason,
            confidence=answer.confidence,
            confidence_calibrated=answer.confidence_calibrated,
            product_confidence=answer.product_confidence,
            latency_ms=_elapsed_ms(started),
            prompt_tokens=answer.prompt_tokens,
            completion_tokens=answer.completion_tokens,
            attempts=model_calls,
            truncated=fitted.truncated,
            raw_answer=answer.raw_answer,
            **common,
        )
    raise AssertionError("unreachable: the retry loop always returns")


def _failure(
    common: dict[str, Any],
    started: float,
    attempts: int,
    truncated: bool,
    exc: BackendError,
    raw_answer: str | None,
) -> ExtractionOutcome:
    return ExtractionOutcome(
        status="failed",
        product=None,
        reason=None,
        confidence=None,
        latency_ms=_elapsed_ms(started),
        prompt_tokens=None,
        completion_tokens=None,
        attempts=attempts,
        truncated=truncated,
        raw_answer=raw_answer,
        error=str(exc)[:2000],
        error_kind=exc.kind,
        **common,
    )


def _elapsed_ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def _reader_sha256(backend: Backend, taxonomy: Taxonomy) -> str | None:
    """The reader (a second adapter, llamacpp's) this list's definitions are read with, by its
    sha256, as the adapter is recorded, whether the call then succeeds or not; None for a
    backend without one, or a list whose definitions it does not read."""
    reader_for = getattr(backend, "reader_sha256_for", None)
    return reader_for(taxonomy) if reader_for is not None else None
