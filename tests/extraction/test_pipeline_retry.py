"""extract() with test doubles of the Backend protocol; RetryPolicy delays; no real sleeping."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from app.extraction import retry as retry_module
from app.extraction.pipeline import ExtractionOutcome, extract
from app.extraction.retry import RetryPolicy
from app.extraction.truncation import MARKER
from app.llm.base import BackendAnswer, ExtractionRequest
from app.llm.errors import BackendError, InvalidAnswerError, TransientBackendError
from app.llm.prompts import PROMPT_VERSION
from schemas.extraction import answer_model
from schemas.taxonomy import Taxonomy, load_taxonomy

TAXONOMY = load_taxonomy()


def count_words(text: str) -> int:
    return len(text.split())


def make_answer(
    taxonomy: Taxonomy, product: str | None = "Box 5", reason: str = "billing", attempts: int = 1
) -> BackendAnswer:
    model = answer_model(taxonomy)
    parsed = model.model_validate({"product": product, "reason": reason})
    return BackendAnswer(
        answer=parsed,
        raw_answer=parsed.model_dump_json(),
        prompt_tokens=42,
        completion_tokens=7,
        attempts=attempts,
        confidence=0.875,
    )


class FakeScriptedBackend:
    """Plays a script: each call to extract() raises or returns the next item."""

    name = "fake-scripted"
    model = "scripted-1"

    def __init__(self, script: Iterable[BaseException | BackendAnswer], budget: int = 10_000):
        self.script = list(script)
        self.budget = budget
        self.requests: list[ExtractionRequest] = []

    def count_tokens(self, text: str) -> int:
        return count_words(text)

    def transcript_budget(self, taxonomy: Taxonomy) -> int:
        return self.budget

    def extract(self, request: ExtractionRequest) -> BackendAnswer:
        self.requests.append(request)
        if not self.script:
            raise AssertionError("backend called more often than scripted")
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item


class FakeSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def transient(kind: str = "timeout", retry_after_s: float | None = None) -> TransientBackendError:
    return TransientBackendError(f"{kind} from server", kind=kind, retry_after_s=retry_after_s)


def run(
    backend: FakeScriptedBackend,
    policy: RetryPolicy,
    text: str = "my invoice is wrong",
    **kwargs: object,
) -> tuple[ExtractionOutcome, FakeSleep]:
    sleep = FakeSleep()
    outcome = extract(text, backend=backend, taxonomy=TAXONOMY, retry=policy, sleep=sleep, **kwargs)
    return outcome, sleep


# --- the pipeline ---------------------------------------------------------------------------


def test_success_on_first_try() -> None:
    backend = FakeScriptedBackend([make_answer(TAXONOMY)])
    outcome, sleep = run(backend, RetryPolicy(attempts=3))
    assert outcome.status == "succeeded"
    assert outcome.succeeded is True
    assert outcome.product == "Box 5"
    assert outcome.reason == "billing"
    assert outcome.confidence == 0.875
    assert outcome.attempts == 1
    assert outcome.truncated is False
    assert outcome.prompt_tokens == 42 and outcome.completion_tokens == 7
    assert outcome.backend == "fake-scripted" and outcome.model == "scripted-1"
    assert outcome.prompt_version == PROMPT_VERSION
    assert outcome.taxonomy_version == TAXONOMY.version
    assert outcome.error is None and outcome.error_kind is None
    assert outcome.raw_answer == '{"product":"Box 5","reason":"billing"}'
    assert outcome.latency_ms >= 0
    assert sleep.delays == []
    assert backend.requests[0].transcript == "my invoice is wrong"
    assert backend.requests[0].taxonomy is TAXONOMY


def test_success_after_two_transient_failures_counts_three_attempts() -> None:
    backend = FakeScriptedBackend(
        [transient("timeout"), transient("http_503"), make_answer(TAXONOMY, reason="delivery")]
    )
    outcome, sleep = run(backend, RetryPolicy(attempts=5, base_s=1.0, max_s=60.0))
    assert outcome.status == "succeeded"
    assert outcome.reason == "delivery"
    assert outcome.attempts == 3
    assert len(sleep.delays) == 2
    assert len(backend.requests) == 3
    # every retry sends the same request
    assert len({id(r) for r in backend.requests}) == 1


def test_answer_attempts_are_added_to_transient_failures() -> None:
    # the backend itself needed 2 model calls (e.g. a re-ask after a validation error)
    backend = FakeScriptedBackend([transient(), make_answer(TAXONOMY, attempts=2)])
    outcome, _ = run(backend, RetryPolicy(attempts=3))
    assert outcome.succeeded
    assert outcome.attempts == 3


def test_transient_errors_are_retried_up_to_the_policy_then_fail() -> None:
    policy = RetryPolicy(attempts=4, base_s=0.5, max_s=10.0)
    backend = FakeScriptedBackend([transient("http_429")] * 3 + [transient("http_502")])
    outcome, sleep = run(backend, policy)
    assert len(backend.requests) == 4
    assert len(sleep.delays) == 3  # no sleep after the last attempt
    assert outcome.status == "failed"
    assert outcome.succeeded is False
    assert outcome.attempts == 4
    assert outcome.error_kind == "http_502"
    assert outcome.error == "http_502 from server"
    assert outcome.product is None and outcome.reason is None and outcome.confidence is None
    assert outcome.raw_answer is None
    assert outcome.prompt_tokens is None and outcome.completion_tokens is None


def test_single_attempt_policy_does_not_retry() -> None:
    backend = FakeScriptedBackend([transient()])
    outcome, sleep = run(backend, RetryPolicy(attempts=1))
    assert outcome.status == "failed"
    assert outcome.attempts == 1
    assert sleep.delays == []


def test_retry_delays_grow_exponentially_within_jitter_and_respect_max() -> None:
    policy = RetryPolicy(attempts=8, base_s=1.0, max_s=10.0)
    backend = FakeScriptedBackend([transient()] * 8)
    outcome, sleep = run(backend, policy)
    assert outcome.attempts == 8
    assert len(sleep.delays) == 7
    for failed, delay in enumerate(sleep.delays, start=1):
        ceiling = min(10.0, 1.0 * 2 ** (failed - 1))
        assert ceiling / 2 <= delay <= ceiling, (failed, delay)
        assert delay <= policy.max_s


def test_retry_after_is_honoured() -> None:
    policy = RetryPolicy(attempts=3, base_s=0.1, max_s=1.0)
    backend = FakeScriptedBackend(
        [
            transient("http_429", retry_after_s=7.5),
            transient("http_429", retry_after_s=2.0),
            make_answer(TAXONOMY),
        ]
    )
    outcome, sleep = run(backend, policy)
    assert outcome.succeeded and outcome.attempts == 3
    assert sleep.delays[0] >= 7.5
    assert sleep.delays[1] >= 2.0


def test_invalid_answer_is_not_retried_and_keeps_raw_answer() -> None:
    error = InvalidAnswerError(
        "reason 'weather' is not allowed", raw_answer='{"reason": "weather"}', attempts=2
    )
    backend = FakeScriptedBackend([error])
    outcome, sleep = run(backend, RetryPolicy(attempts=5))
    assert outcome.status == "failed"
    assert outcome.error_kind == "invalid_answer"
    assert outcome.raw_answer == '{"reason": "weather"}'
    assert outcome.attempts == 2
    assert "weather" in outcome.error
    assert len(backend.requests) == 1
    assert sleep.delays == []


def test_invalid_answer_after_transient_failure_adds_attempts() -> None:
    error = InvalidAnswerError("bad", raw_answer="not json", attempts=3)
    backend = FakeScriptedBackend([transient(), error])
    outcome, _ = run(backend, RetryPolicy(attempts=5))
    assert outcome.status == "failed"
    assert outcome.attempts == 4
    assert outcome.raw_answer == "not json"


def test_backend_error_is_not_retried() -> None:
    backend = FakeScriptedBackend([BackendError("401 bad credentials"), make_answer(TAXONOMY)])
    outcome, sleep = run(backend, RetryPolicy(attempts=5))
    assert outcome.status == "failed"
    assert outcome.error_kind == "backend_error"
    assert outcome.error == "401 bad credentials"
    assert outcome.attempts == 1
    assert len(backend.requests) == 1
    assert sleep.delays == []


def test_error_text_is_bounded() -> None:
    backend = FakeScriptedBackend([BackendError("x" * 10_000)])
    outcome, _ = run(backend, RetryPolicy(attempts=1))
    assert outcome.error == "x" * 2000


def test_long_transcript_is_truncated_and_flagged() -> None:
    text = "\n".join(f"client: turn{i} my invoice is wrong again" for i in range(200))
    backend = FakeScriptedBackend([make_answer(TAXONOMY)], budget=40)
    outcome, _ = run(backend, RetryPolicy(attempts=1), text=text)
    assert outcome.succeeded
    assert outcome.truncated is True
    sent = backend.requests[0].transcript
    assert MARKER in sent
    assert count_words(sent) <= 40
    assert sent.startswith("client: turn0 ")
    assert sent.endswith("turn199 my invoice is wrong again")


def test_truncated_flag_is_kept_on_failure() -> None:
    text = " ".join(["word"] * 500)
    backend = FakeScriptedBackend([BackendError("refused")], budget=30)
    outcome, _ = run(backend, RetryPolicy(attempts=1), text=text)
    assert outcome.status == "failed"
    assert outcome.truncated is True


def test_short_transcript_is_not_truncated() -> None:
    backend = FakeScriptedBackend([make_answer(TAXONOMY)], budget=40)
    outcome, _ = run(backend, RetryPolicy(attempts=1), text="short call about a bill")
    assert outcome.truncated is False
    assert backend.requests[0].transcript == "short call about a bill"


# --- RetryPolicy on its own -----------------------------------------------------------------


@pytest.mark.parametrize("failed", range(1, 12))
def test_delay_is_within_jitter_bounds_and_never_above_max(failed: int) -> None:
    policy = RetryPolicy(attempts=12, base_s=0.5, max_s=8.0)
    ceiling = min(8.0, 0.5 * 2 ** (failed - 1))
    for _ in range(50):
        delay = policy.delay(failed)
        assert ceiling / 2 <= delay <= ceiling
        assert delay <= policy.max_s


def test_delay_ceilings_double_until_max(monkeypatch: pytest.MonkeyPatch) -> None:
    # make the jitter pick its upper bound to see the exponential ceiling itself
    monkeypatch.setattr(retry_module.random, "uniform", lambda low, high: high)
    policy = RetryPolicy(attempts=8, base_s=1.0, max_s=20.0)
    assert [policy.delay(n) for n in range(1, 8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 20.0, 20.0]
    monkeypatch.setattr(retry_module.random, "uniform", lambda low, high: low)
    assert [policy.delay(n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


@pytest.mark.parametrize("retry_after", [0.0, 0.3, 5.0, 59.0, 120.0])
def test_delay_never_less_than_retry_after(retry_after: float) -> None:
    policy = RetryPolicy(attempts=5, base_s=1.0, max_s=60.0)
    for failed in (1, 3, 5):
        assert policy.delay(failed, retry_after) >= retry_after


def test_negative_retry_after_is_clamped_to_zero() -> None:
    assert RetryPolicy().delay(1, -5.0) == 0.0


def test_absurd_retry_after_is_bounded() -> None:
    policy = RetryPolicy(attempts=5, base_s=1.0, max_s=60.0)
    assert policy.delay(1, 86_400.0) == 300.0


def test_a_context_too_small_for_any_transcript_is_a_failed_outcome_not_an_exception():
    class FakeTinyBackend:
        name = "fake-tiny"
        model = "tiny"

        def count_tokens(self, text):
            return len(text.split())

        def transcript_budget(self, taxonomy):
            return 1

        def extract(self, request):
            raise AssertionError("never called")

    outcome = extract("word " * 50, backend=FakeTinyBackend(), taxonomy=load_taxonomy())
    assert outcome.status == "failed"
    assert outcome.error_kind == "context_too_small"
