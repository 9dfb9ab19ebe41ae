"""The openai backend against a real OpenAI-compatible server: llama-cpp-python's own server
serving the same local model, through the openai client and instructor (TOOLS mode)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.extraction.pipeline import extract
from app.llm.openai_compat import OpenAICompatBackend
from schemas.taxonomy import load_taxonomy
from support.calls import CALLS
from support.services import free_port, wait_for

pytestmark = pytest.mark.model

TAXONOMY = load_taxonomy()


@pytest.fixture(scope="module")
def llama_server(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = (tmp_path_factory.mktemp("llama-server") / "server.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model_path),
            "--model_alias",
            "gemma-3-270m",
            "--chat_format",
            "gemma",
            "--n_ctx",
            "2048",
            "--n_threads",
            "2",
            # Token log-probabilities need every position's logits (CALLX_OPENAI__LOGPROBS).
            "--logits_all",
            "true",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_for(
            lambda: httpx.get(url + "/models", timeout=2).status_code == 200, 90, "llama_cpp.server"
        )
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_tools_mode_against_llama_cpp_server_gives_valid_answers(llama_server: str) -> None:
    backend = OpenAICompatBackend(
        base_url=llama_server,
        api_key="unused",
        model="gemma-3-270m",
        mode="TOOLS",
        timeout_s=60,
        validation_retries=2,
        context_tokens=2048,
    )
    for call in CALLS[:4]:
        outcome = extract(call["text"], backend=backend, taxonomy=TAXONOMY)
        # A small base model may fail validation: then it must say so, never store garbage.
        if outcome.status == "succeeded":
            assert outcome.reason in TAXONOMY.codes
            assert outcome.prompt_tokens and outcome.prompt_tokens > 50
        else:
            assert outcome.error_kind == "invalid_answer" and outcome.attempts == 3
    # And at least most of them succeed through the real server.
    outcomes = [extract(c["text"], backend=backend, taxonomy=TAXONOMY) for c in CALLS]
    assert sum(o.succeeded for o in outcomes) >= len(CALLS) // 2, [o.error for o in outcomes]
    assert all(o.backend == "openai" and o.model == "gemma-3-270m" for o in outcomes)


def test_the_reasons_probability_is_read_from_the_servers_logprobs(llama_server: str) -> None:
    """llama-cpp-python's server returns token log-probabilities in JSON mode (its
    response_format takes json_object): the confidence is read from them as the backend does.
    The base model is asked to copy an answer (it does not answer this task reliably alone)."""
    import openai

    from app.llm.openai_compat import reason_probability

    client = openai.OpenAI(base_url=llama_server, api_key="unused", max_retries=0)
    completion = client.chat.completions.create(
        model="gemma-3-270m",
        messages=[
            {
                "role": "user",
                "content": 'Copy this JSON exactly: {"product": null, "reason": "billing"}',
            }
        ],
        response_format={"type": "json_object"},
        logprobs=True,
        top_logprobs=1,
        temperature=0,
        max_tokens=40,
    )
    tokens = completion.choices[0].logprobs.content  # type: ignore[union-attr]
    assert tokens and all(t.logprob <= 0 for t in tokens)
    content = completion.choices[0].message.content or ""
    assert '"reason": "billing"' in content, content
    confidence = reason_probability(completion, "billing")
    assert confidence is not None and 0 < confidence <= 1
    assert reason_probability(completion, "delivery") is None  # not the answer given
