"""Backend failures over real HTTP: 429 with Retry-After, 500s, timeouts, refused connections,
invalid answers. Retried with backoff (transport) or with the error fed back (validation),
then a failed outcome with the error stored; other calls are unaffected."""

from __future__ import annotations

import json
from typing import Any

from app.extraction.pipeline import extract
from app.extraction.retry import RetryPolicy
from app.llm.openai_compat import OpenAICompatBackend
from schemas.taxonomy import load_taxonomy
from support.openai_stub import OpenAIStub, Reply, tool_call_reply
from support.services import free_port

TAXONOMY = load_taxonomy()
FAST = RetryPolicy(attempts=4, base_s=0.05, max_s=0.2)
GOOD = {"product": "Livebox 6", "reason": "breakdown"}


def backend(base_url: str, timeout_s: float = 5.0) -> OpenAICompatBackend:
    return OpenAICompatBackend(
        base_url=base_url,
        api_key="sk-test",
        model="stub-model",
        timeout_s=timeout_s,
        validation_retries=2,
        context_tokens=8192,
    )


def user_text(request: dict[str, Any]) -> str:
    return " ".join(str(m.get("content")) for m in request["messages"])


def test_429_with_retry_after_is_honoured_then_succeeds() -> None:
    def script(_: dict, number: int) -> Reply:
        return Reply(429, headers={"retry-after": "1"}) if number == 1 else tool_call_reply(GOOD)

    with OpenAIStub(script) as stub:
        outcome = extract(
            "Client: ma box est en panne",
            backend=backend(stub.base_url),
            taxonomy=TAXONOMY,
            retry=FAST,
        )
    assert outcome.status == "succeeded" and outcome.reason == "breakdown"
    assert outcome.attempts == 2
    assert stub.times[1] - stub.times[0] >= 0.95  # waited as the server asked, not base_s


def test_500s_exhaust_the_attempts_and_other_calls_are_unaffected() -> None:
    def script(request: dict, _: int) -> Reply:
        return Reply(500) if "POISON" in user_text(request) else tool_call_reply(GOOD)

    with OpenAIStub(script) as stub:
        client = backend(stub.base_url)
        failed = extract("Client: POISON call", backend=client, taxonomy=TAXONOMY, retry=FAST)
        fine = extract("Client: ma box est en panne", backend=client, taxonomy=TAXONOMY, retry=FAST)
    assert failed.status == "failed" and failed.error_kind == "server_error"
    assert failed.attempts == 4 and "500" in failed.error
    assert fine.status == "succeeded" and fine.attempts == 1
    assert len(stub.requests) == 5  # 4 tries + 1: the openai client's own retries are off


def test_timeouts_and_refused_connections_fail_with_their_kind() -> None:
    with OpenAIStub(lambda *_: Reply(200, body={}, delay_s=2.0)) as stub:
        slow = extract(
            "Client: x",
            backend=backend(stub.base_url, timeout_s=0.3),
            taxonomy=TAXONOMY,
            retry=RetryPolicy(attempts=2, base_s=0.05, max_s=0.1),
        )
    assert slow.status == "failed" and slow.error_kind == "timeout" and slow.attempts == 2
    refused = extract(
        "Client: x",
        backend=backend(f"http://127.0.0.1:{free_port()}/v1"),
        taxonomy=TAXONOMY,
        retry=RetryPolicy(attempts=3, base_s=0.05, max_s=0.1),
    )
    assert (
        refused.status == "failed" and refused.error_kind == "connection" and refused.attempts == 3
    )


def test_an_invalid_answer_is_retried_with_the_error_fed_back() -> None:
    def script(_: dict, number: int) -> Reply:
        return (
            tool_call_reply({"product": "box", "reason": "not_a_code"})
            if number == 1
            else tool_call_reply(GOOD)
        )

    with OpenAIStub(script) as stub:
        outcome = extract(
            "Client: ma box est en panne",
            backend=backend(stub.base_url),
            taxonomy=TAXONOMY,
            retry=FAST,
        )
    assert outcome.status == "succeeded" and outcome.reason == "breakdown"
    assert len(stub.requests) == 2 and outcome.attempts == 2
    # The second request carries the validation error back to the model.
    assert "not_a_code" in json.dumps(stub.requests[1]["messages"][1:])


def test_an_answer_that_stays_invalid_fails_with_the_raw_answer_stored() -> None:
    bad = {"product": "box", "reason": "refund_everything"}
    with OpenAIStub(lambda *_: tool_call_reply(bad)) as stub:
        outcome = extract(
            "Client: x", backend=backend(stub.base_url), taxonomy=TAXONOMY, retry=FAST
        )
    assert outcome.status == "failed" and outcome.error_kind == "invalid_answer"
    assert outcome.attempts == 3 and len(stub.requests) == 3  # 1 + 2 validation retries, no more
    assert json.loads(outcome.raw_answer) == bad
    assert "reason" in outcome.error
