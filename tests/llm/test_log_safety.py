"""No transcript text and no API key in logs or error texts, whatever the backend does.

Extractions go through the real pipeline and the openai backend (openai client + instructor)
to a fake OpenAI-compatible server on this machine that fails in the ways that produce logs
and errors: a 5xx (retried), answers that do not validate (re-asked), a 422 that echoes the
request as FastAPI servers do, a 429, and successes. Every log record, at DEBUG, is checked.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from app.extraction.pipeline import ExtractionOutcome, extract
from app.extraction.retry import RetryPolicy
from app.llm.openai_compat import OpenAICompatBackend
from app.logs import JsonFormatter, configure_logging
from schemas.taxonomy import load_taxonomy
from support.openai_stub import tool_call_completion

TAXONOMY = load_taxonomy()
MARKER = "Zebulon-Quartz-7731 whispered that the purple walrus cancelled his fibre contract"
TRANSCRIPT = f"Client : bonjour. {MARKER}. Conseiller : je regarde votre facture."
API_KEY = "sk-callx-FAKE-KEY-9f8e7d6c5b4a39281706"
# Pieces of the secrets that must not appear either (a truncated echo is still a leak).
SECRETS = (MARKER, MARKER[:24], "purple walrus", API_KEY, API_KEY[8:30])

Reply = tuple[int, Callable[[dict[str, Any]], Any]]


def tool_call(arguments: dict[str, Any]) -> Callable[[dict[str, Any]], Any]:
    return lambda _request: tool_call_completion(arguments)


def server_error(request: dict[str, Any]) -> dict[str, Any]:
    # A careless server that quotes what it was processing.
    return {"error": {"message": f"internal error on {json.dumps(request)}", "type": "server"}}


def fastapi_422(request: dict[str, Any]) -> dict[str, Any]:
    # What a FastAPI-based server (vLLM, llama-cpp-python's) answers: the input echoed back.
    return {
        "detail": [
            {
                "type": "extra_forbidden",
                "loc": ["body", "foo"],
                "msg": "Extra inputs are not permitted",
                "input": request,
            },
        ]
    }


def openai_400(request: dict[str, Any]) -> dict[str, Any]:
    return {"error": {"message": "Invalid value for 'max_tokens'.", "type": "invalid_request"}}


def quoting_400(request: dict[str, Any]) -> dict[str, Any]:
    # A refusal that quotes the passage it objects to (content filters do).
    return {"error": {"message": f"Request flagged: '{MARKER}'", "type": "content_filter"}}


VALID = tool_call({"product": "Freebox Pop", "reason": "billing"})
INVALID = tool_call({"product": None, "reason": "nope"})
QUOTING = tool_call({"product": None, "reason": MARKER})  # a model parroting the call


class FakeOpenAI:
    """Answers POST /v1/chat/completions with the scripted replies, in order."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = json.loads(raw)
                owner.requests.append(({k.lower(): v for k, v in self.headers.items()}, request))
                status, build = owner.replies.pop(0) if owner.replies else (500, server_error)
                body = json.dumps(build(request)).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI()
    yield server
    server.close()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure_logging changes global state: put it back after the test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    names = ("instructor", "httpx", "httpx2", "openai")
    levels = {name: logging.getLogger(name).level for name in names}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, saved in levels.items():
        logging.getLogger(name).setLevel(saved)


def run_extractions(server: FakeOpenAI) -> list[ExtractionOutcome]:
    backend = OpenAICompatBackend(
        base_url=server.url,
        api_key=API_KEY,
        model="fake-model",
        timeout_s=10,
        validation_retries=1,
    )
    assert not backend.redacts  # local server, auto: the marker really is sent

    def run(*replies: Reply) -> ExtractionOutcome:
        server.replies = list(replies)
        return extract(
            TRANSCRIPT,
            backend=backend,
            taxonomy=TAXONOMY,
            retry=RetryPolicy(attempts=3, base_s=0.001, max_s=0.001),
            sleep=lambda _s: None,
        )

    return [
        # A 500 (retried by the pipeline), then answers that never validate (re-asked once).
        run((500, server_error), (200, INVALID), (200, INVALID)),
        # 500s until the pipeline gives up.
        run((500, server_error), (502, server_error), (503, server_error)),
        # A 422 that echoes the request, as FastAPI servers do.
        run((422, fastapi_422)),
        # An OpenAI-style 400: its message is kept.
        run((400, openai_400)),
        # A 400 whose message quotes the transcript: withheld.
        run((400, quoting_400)),
        # A model that answers with a piece of the transcript, twice.
        run((200, QUOTING), (200, QUOTING)),
        # A 429, an invalid answer re-asked into a valid one.
        run((429, server_error), (200, INVALID), (200, VALID)),
        # A plain success.
        run((200, VALID)),
    ]


def check_outcomes(server: FakeOpenAI, outcomes: list[ExtractionOutcome]) -> None:
    kinds = [(o.status, o.error_kind) for o in outcomes]
    assert kinds == [
        ("failed", "invalid_answer"),
        ("failed", "server_error"),
        ("failed", "backend_error"),
        ("failed", "backend_error"),
        ("failed", "backend_error"),
        ("failed", "invalid_answer"),
        ("succeeded", None),
        ("succeeded", None),
    ]
    assert "nope" in (outcomes[0].error or "") and outcomes[0].attempts == 3
    assert "422" in (outcomes[2].error or "") and "Extra inputs" in (outcomes[2].error or "")
    assert "Invalid value for 'max_tokens'" in (outcomes[3].error or "")
    assert "(400): (details withheld" in (outcomes[4].error or "")
    assert "after 2 attempts: (details withheld" in (outcomes[5].error or "")
    assert outcomes[6].reason == "billing"
    assert outcomes[7].product == "Freebox Pop" and outcomes[7].reason == "billing"
    # The secrets really went over the wire: the checks below are not vacuous.
    assert len(server.requests) == 15
    for headers, body in server.requests:
        assert MARKER in json.dumps(body)
        assert headers.get("authorization") == f"Bearer {API_KEY}"
    for outcome in outcomes:
        # raw_answer is the model's own answer, stored as such (here: the parroting one).
        for secret in SECRETS:
            assert secret not in repr(replace(outcome, raw_answer=None)), (secret, outcome)


def record_texts(record: logging.LogRecord) -> list[str]:
    """Everything a handler could write out of a record: message, arguments, attributes."""
    texts = [record.getMessage(), str(record.msg), repr(record.args)]
    texts += [repr(value) for value in vars(record).values()]
    if record.exc_info and record.exc_info[1] is not None:
        texts.append(repr(record.exc_info[1]))
    texts.append(JsonFormatter().format(record))
    return texts


def leaks(records: list[logging.LogRecord]) -> list[tuple[str, str, str]]:
    return [
        (record.name, record.levelname, secret)
        for record in records
        for text in record_texts(record)
        for secret in SECRETS
        if secret in text
    ]


def test_no_transcript_or_key_in_logs_with_the_production_logging(
    fake_openai: FakeOpenAI,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    restore_logging: None,
) -> None:
    configure_logging("DEBUG")  # as `callx serve` / `callx worker` with CALLX_LOG_LEVEL=DEBUG
    assert logging.getLogger("instructor").level == logging.CRITICAL
    assert logging.getLogger().level == logging.DEBUG
    logging.getLogger().addHandler(caplog.handler)  # configure_logging replaced the handlers
    outcomes = run_extractions(fake_openai)
    check_outcomes(fake_openai, outcomes)
    assert any(r.name == "app.extraction.pipeline" for r in caplog.records)  # retries logged
    assert leaks(caplog.records) == []
    written = capfd.readouterr()
    assert "transient backend error, retrying" in written.err  # the JSON handler wrote them
    for secret in SECRETS:
        assert secret not in written.err and secret not in written.out


def test_callx_own_logs_never_hold_the_transcript_or_key(
    fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    # No configure_logging: every library logs at DEBUG. Whatever they do, callx's own loggers
    # (and the error texts it stores) must stay clean.
    caplog.set_level(logging.DEBUG)
    outcomes = run_extractions(fake_openai)
    check_outcomes(fake_openai, outcomes)
    own = [r for r in caplog.records if r.name.split(".")[0] in ("app", "workers", "schemas")]
    assert own, "the pipeline's retry warnings should be there"
    assert leaks(own) == []


def test_configure_logging_silences_instructor(restore_logging: None) -> None:
    logging.getLogger("instructor").setLevel(logging.NOTSET)
    configure_logging("DEBUG")
    assert logging.getLogger("instructor").level == logging.CRITICAL
    # Its children (instructor.v2.retry logs failed calls verbatim) inherit it.
    assert logging.getLogger("instructor.v2.retry").getEffectiveLevel() == logging.CRITICAL
    assert not logging.getLogger("instructor.v2.retry").isEnabledFor(logging.ERROR)
    assert logging.getLogger("openai").getEffectiveLevel() >= logging.WARNING
