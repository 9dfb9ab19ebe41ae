"""An API backend's confidence from the endpoint's token log-probabilities (JSON modes): the
reason's probability, from a scripted OpenAI-compatible server; refused with tool calls."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest

from app.config import Settings, SettingsError
from app.extraction.pipeline import extract
from app.llm import check_backend
from app.llm.openai_compat import OpenAICompatBackend
from schemas.taxonomy import load_taxonomy
from support.openai_stub import OpenAIStub, Reply

TAXONOMY = load_taxonomy()
ANSWER = '{"product": "Livebox 6", "reason": "billing"}'
# The answer as the endpoint's tokens, each with its log-probability.
TOKENS = [
    ('{"', -0.01),
    ("product", -0.02),
    ('": "', -0.01),
    ("Live", -0.3),
    ("box 6", -0.2),
    ('", "', -0.01),
    ("reason", -0.01),
    ('": "', -0.02),
    ("bill", -0.4),
    ("ing", -0.05),
    ('"}', -0.01),
]


def json_reply(with_logprobs: bool) -> Reply:
    choice: dict[str, Any] = {
        "index": 0,
        "finish_reason": "stop",
        "message": {"role": "assistant", "content": ANSWER},
    }
    if with_logprobs:
        choice["logprobs"] = {
            "content": [
                {"token": t, "logprob": lp, "bytes": None, "top_logprobs": []} for t, lp in TOKENS
            ]
        }
    return Reply(
        body={
            "id": "chatcmpl-stub",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": "stub-model",
            "choices": [choice],
            "usage": {"prompt_tokens": 100, "completion_tokens": 11, "total_tokens": 111},
        }
    )


def backend(base_url: str, logprobs: bool = True) -> OpenAICompatBackend:
    return OpenAICompatBackend(
        base_url=base_url, api_key="x", model="stub-model", mode="JSON", logprobs=logprobs
    )


def test_the_confidence_is_the_probability_of_the_reasons_tokens() -> None:
    with OpenAIStub(lambda *_: json_reply(with_logprobs=True)) as stub:
        outcome = extract(
            "Client: ma facture Livebox 6", backend=backend(stub.base_url), taxonomy=TAXONOMY
        )
    assert outcome.reason == "billing" and outcome.succeeded
    assert outcome.confidence == pytest.approx(math.exp(-0.4 - 0.05), abs=1e-4)
    assert outcome.confidence_calibrated is False  # the endpoint's own score
    assert stub.requests[0]["logprobs"] is True and stub.requests[0]["top_logprobs"] == 1


def test_no_logprobs_returned_or_not_asked_gives_no_confidence() -> None:
    with OpenAIStub(lambda *_: json_reply(with_logprobs=False)) as stub:
        outcome = extract("Client: ma facture", backend=backend(stub.base_url), taxonomy=TAXONOMY)
    assert outcome.succeeded and outcome.confidence is None
    with OpenAIStub(lambda *_: json_reply(with_logprobs=True)) as stub:
        outcome = extract("Client: x", backend=backend(stub.base_url, False), taxonomy=TAXONOMY)
    assert outcome.confidence is None and "logprobs" not in stub.requests[0]


def test_logprobs_with_tool_calls_stop_start_up() -> None:
    settings = Settings(
        extraction={"backend": "openai"},
        openai={"base_url": "http://127.0.0.1:1/v1", "model": "m", "logprobs": True},
    )
    with pytest.raises(SettingsError, match="CALLX_OPENAI__LOGPROBS=true needs"):
        check_backend(settings)
    json_mode = settings.model_copy(
        update={"openai": settings.openai.model_copy(update={"mode": "JSON_SCHEMA"})}
    )
    assert check_backend(json_mode).name == "openai"
