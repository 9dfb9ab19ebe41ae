"""Any OpenAI-compatible Chat Completions endpoint, through the openai client and instructor.

instructor re-asks after an answer that does not validate (the error is fed back); transport
errors are not retried here (the openai client's own retries are off) but raised as
TransientBackendError, so the pipeline retries them once, with backoff, not stacked.
"""

from __future__ import annotations

import json
import math
import re
import threading
from typing import Any, cast

import instructor
import openai
from instructor.core.exceptions import InstructorRetryException
from pydantic import BaseModel

from app.config import Settings
from app.llm.base import BackendAnswer, ExtractionRequest
from app.llm.errors import BackendError, InvalidAnswerError, TransientBackendError
from app.llm.presets import PRESETS, endpoint
from app.llm.prompts import user_message
from app.llm.rate_limit import RateLimiter
from app.llm.redaction import is_remote_url, redact
from schemas.extraction import CallExtractionBase, answer_model
from schemas.taxonomy import Taxonomy

_MODES = {
    "TOOLS": instructor.Mode.TOOLS,
    "JSON_SCHEMA": instructor.Mode.JSON_SCHEMA,
    "JSON": instructor.Mode.JSON,
    "MD_JSON": instructor.Mode.MD_JSON,
}


class OpenAICompatBackend:
    name = "openai"
    concurrent = True

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        model: str,
        mode: str = "TOOLS",
        timeout_s: float = 60.0,
        validation_retries: int = 2,
        context_tokens: int = 8192,
        max_answer_tokens: int = 200,
        chars_per_token: float = 3.0,
        temperature: float = 0.0,
        redact_pii: str = "auto",
        rate_limiter: RateLimiter | None = None,
        logprobs: bool = False,
    ) -> None:
        if mode not in _MODES:
            raise ValueError(f"unknown instructor mode {mode!r}: use one of {', '.join(_MODES)}")
        if redact_pii not in ("auto", "always", "never"):
            raise ValueError(f"unknown redact_pii {redact_pii!r}: use auto, always or never")
        self.model = model
        self.base_url = base_url
        self.context_tokens = context_tokens
        self.max_answer_tokens = max_answer_tokens
        self.chars_per_token = chars_per_token
        self.validation_retries = validation_retries
        self.temperature = temperature
        # Tool calls carry no log-probabilities at any provider: asked only where they can.
        self.logprobs = logprobs and mode != "TOOLS"
        # Decided once: transcripts sent off this machine lose e-mails, phones, cards, IBANs.
        self.is_remote = is_remote_url(base_url)
        self.redacts = redact_pii == "always" or (redact_pii == "auto" and self.is_remote)
        self._client = instructor.from_openai(
            openai.OpenAI(
                base_url=base_url, api_key=api_key or "none", timeout=timeout_s, max_retries=0
            ),
            mode=_MODES[mode],
        )
        # Model calls of the extraction under way (validation re-asks included), per thread.
        self._calls = threading.local()
        self._client.on("completion:response", self._count_call)
        # The shared rate limit (app/llm/rate_limit.py) is taken before every request
        # instructor sends, its validation re-asks included.
        self.rate_limiter = rate_limiter
        if rate_limiter is not None:
            self._client.on("completion:kwargs", self._before_request)
        self._budgets: dict[int, tuple[Taxonomy, int]] = {}
        self._response_models: dict[tuple[str, ...], type[BaseModel]] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAICompatBackend:
        section = settings.openai
        preset = PRESETS.get(section.preset or "")
        base_url, model = endpoint(settings)
        return cls(
            base_url=base_url,
            api_key=section.api_key.get_secret_value(),
            model=model,
            mode=section.mode or (preset.mode if preset else "TOOLS"),
            timeout_s=section.timeout_s,
            validation_retries=settings.extraction.validation_retries,
            context_tokens=section.context_tokens or (preset.context_tokens if preset else 8192),
            max_answer_tokens=section.max_answer_tokens,
            chars_per_token=section.chars_per_token,
            temperature=section.temperature,
            redact_pii=section.redact_pii,
            rate_limiter=RateLimiter.from_settings(settings, base_url=base_url, model=model),
            logprobs=section.logprobs,
        )

    def count_tokens(self, text: str) -> int:
        # No tokenizer for a remote model: a conservative estimate (chars_per_token is low).
        return math.ceil(len(text) / self.chars_per_token)

    def transcript_budget(self, taxonomy: Taxonomy) -> int:
        # Once per taxonomy: the schema's JSON costs more CPU than the rest of a call.
        cached = self._budgets.get(id(taxonomy))
        if cached is not None and cached[0] is taxonomy:
            return cached[1]
        budget = self._transcript_budget(taxonomy)
        self._budgets[id(taxonomy)] = (taxonomy, budget)
        return budget

    def _transcript_budget(self, taxonomy: Taxonomy) -> int:
        overhead = self.count_tokens(user_message(taxonomy, "")) + 200  # message framing, tools
        schema = self.count_tokens(json.dumps(answer_model(taxonomy).model_json_schema()))
        return self.context_tokens - overhead - schema - self.max_answer_tokens

    def _before_request(self, *_: Any, **kwargs: Any) -> None:
        """instructor's completion:kwargs hook: wait for the shared rate limit."""
        assert self.rate_limiter is not None
        tokens = self.estimate_request_tokens(kwargs) if self.rate_limiter.counts_tokens else 0
        self.rate_limiter.acquire(tokens)

    def estimate_request_tokens(self, kwargs: dict[str, Any]) -> int:
        """What a provider counts against a tokens-per-minute limit before answering: the
        prompt (estimated, conservatively: messages and the schema sent) plus max_tokens."""
        text = "".join(
            str(message.get("content") or "") + str(message.get("tool_calls") or "")
            for message in kwargs.get("messages") or ()
            if isinstance(message, dict)
        )
        schema = kwargs.get("tools") or kwargs.get("response_format")
        if schema:
            text += json.dumps(schema, default=str)
        return self.count_tokens(text) + int(kwargs.get("max_tokens") or self.max_answer_tokens)

    def _count_call(self, *_: Any, **__: Any) -> None:
        self._calls.count = getattr(self._calls, "count", 0) + 1

    def response_model(self, taxonomy: Taxonomy) -> type[BaseModel]:
        """The answer model, wrapped for instructor once per taxonomy. Given a plain model,
        instructor wraps it anew on every call, a new class each time: its schema is then
        generated again and again, a third of the CPU of a call to a fast server."""
        model = self._response_models.get(taxonomy.codes)
        if model is None:
            model = self._response_models[taxonomy.codes] = instructor.openai_schema(
                answer_model(taxonomy)
            )
        return model

    def _logprobs_kwargs(self) -> Any:
        # top_logprobs too: llama-cpp-python returns none without it.
        return {"logprobs": True, "top_logprobs": 1} if self.logprobs else {}

    def extract(self, request: ExtractionRequest) -> BackendAnswer:
        model_class = self.response_model(request.taxonomy)
        # Only what is sent is redacted: the stored transcript keeps the original.
        transcript = redact(request.transcript).text if self.redacts else request.transcript
        self._calls.count = 0
        try:
            answer, completion = self._client.chat.completions.create_with_completion(
                model=self.model,
                response_model=model_class,
                max_retries=self.validation_retries,
                messages=[
                    # One user turn: some chat templates (Gemma's) drop system messages.
                    {"role": "user", "content": user_message(request.taxonomy, transcript)}
                ],
                temperature=self.temperature,
                max_tokens=self.max_answer_tokens,
                **self._logprobs_kwargs(),
            )
        except InstructorRetryException as exc:
            cause = exc.__cause__
            if isinstance(cause, openai.APIError):
                raise _map_api_error(cause, transcript) from None
            raise InvalidAnswerError(
                f"answer still invalid after {exc.n_attempts} attempts: "
                + _unquoted(_short(cause), transcript),
                raw_answer=_raw_text(exc.last_completion),
                attempts=exc.n_attempts or 1 + self.validation_retries,
            ) from None
        except openai.APIError as exc:
            raise _map_api_error(exc, transcript) from None
        usage = getattr(completion, "usage", None)
        extracted = cast(CallExtractionBase, answer)  # an instance of answer_model(taxonomy)
        return BackendAnswer(
            answer=extracted,
            raw_answer=_raw_text(completion) or answer.model_dump_json(),
            prompt_tokens=getattr(usage, "prompt_tokens", None),
            completion_tokens=getattr(usage, "completion_tokens", None),
            attempts=max(1, getattr(self._calls, "count", 1)),
            confidence=reason_probability(completion, extracted.reason) if self.logprobs else None,
        )


def reason_probability(completion: Any, reason: str) -> float | None:
    """The probability the model gave the reason's value in its JSON answer: the product of
    the probabilities of the tokens that spell it (from the completion's log-probabilities).
    None where the completion has none, or its text does not hold this reason."""
    choices = getattr(completion, "choices", None) or []
    logprobs = getattr(choices[0], "logprobs", None) if choices else None
    tokens = getattr(logprobs, "content", None) or []
    if not tokens:
        return None
    text = "".join(token.token for token in tokens)
    key = re.search(r'"reason"\s*:\s*"', text)
    if key is None or not text.startswith(reason + '"', key.end()):
        return None
    start, end = key.end(), key.end() + len(reason)
    total, position = 0.0, 0
    for token in tokens:
        token_start, position = position, position + len(token.token)
        if position > start and token_start < end:  # the token spells part of the value
            total += token.logprob
    return round(math.exp(total), 4)


def _map_api_error(exc: openai.APIError, transcript: str = "") -> BackendError:
    if isinstance(exc, openai.APITimeoutError):
        return TransientBackendError("the backend timed out", kind="timeout")
    if isinstance(exc, openai.APIConnectionError):
        return TransientBackendError("could not connect to the backend", kind="connection")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        if status == 429:
            return TransientBackendError(
                "rate limited by the backend (429)",
                kind="rate_limited",
                retry_after_s=_retry_after(exc.response.headers),
            )
        if status >= 500 or status in (408, 409):
            return TransientBackendError(
                f"backend error {status}",
                kind="server_error",
                retry_after_s=_retry_after(exc.response.headers),
            )
        detail = _unquoted(_status_detail(exc), transcript)
        return BackendError(f"backend refused the request ({status}): {detail}")
    return BackendError(f"backend error: {type(exc).__name__}")


def _status_detail(exc: openai.APIStatusError) -> str:
    """The server's own error message, never the whole body: some servers (FastAPI's 422s)
    echo the request, and with it the transcript, into their error bodies."""
    body = exc.body  # the body's "error" member when it has one
    if isinstance(body, str):
        return _short(body, 200)
    if isinstance(body, dict):
        for key in ("message", "detail"):
            if isinstance(body.get(key), str):
                return _short(body[key], 200)
        if isinstance(body.get("detail"), list):
            problems = [
                f"{'.'.join(map(str, item.get('loc', ())))}: {item.get('msg', '')}"
                for item in body["detail"]
                if isinstance(item, dict)
            ]
            return _short("; ".join(problems), 200)
    return "no details"


def _unquoted(text: str, transcript: str, window: int = 24) -> str:
    """`text`, unless it quotes the transcript (`window` characters in a row): error texts are
    stored and returned by the API, and a server or a model may quote what it was sent."""
    if len(transcript) >= window and any(
        text[i : i + window] in transcript for i in range(len(text) - window + 1)
    ):
        return "(details withheld: they quote the transcript)"
    return text


def _retry_after(headers: Any) -> float | None:
    for name in ("retry-after-ms", "retry-after"):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value)
        except ValueError:
            continue  # an HTTP date: rare for APIs, fall back to backoff
        return seconds / 1000 if name == "retry-after-ms" else seconds
    return None


def _raw_text(completion: Any) -> str | None:
    """The model's answer text (tool-call arguments or message content), for the record."""
    try:
        message = completion.choices[0].message
    except (AttributeError, IndexError, TypeError):
        return None
    calls = getattr(message, "tool_calls", None)
    if calls:
        return str(calls[0].function.arguments)
    content = getattr(message, "content", None)
    return None if content is None else str(content)


def _short(value: object, limit: int = 500) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "…"
