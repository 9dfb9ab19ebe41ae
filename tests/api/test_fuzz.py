"""Fuzzing the REST API from its own OpenAPI document (schemathesis, in-process over ASGI, on
real PostgreSQL): no request may end in a 5xx, and every answer must be one the document
describes (status code, content type, body schema). Bounded and seeded, so CI is stable.

Plus SQL-looking strings in every query parameter of every GET endpoint: answered 2xx/4xx,
matching nothing, and the tables still there afterwards with the same rows."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import create_engine, text

from app.config import Settings
from app.db.session import build_engine, build_sessionmaker
from app.extraction.extractor import Extractor
from app.extraction.service import run_extraction
from app.extraction.store import ExtractionStore
from app.jobs.workers import Heartbeat, WorkerIdentity
from app.llm.fake import FakeBackend
from app.main import create_app
from support.calls import CALLS
from support.fakes import FakeTaskQueue

# Per operation, for the fuzzing phase (the examples and coverage phases come on top). Raise it
# for a longer hunt: FUZZ_MAX_EXAMPLES=500 pytest tests/api/test_fuzz.py
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "40"))
SEED = int(os.environ.get("FUZZ_SEED", "20260417"))  # fixed: the same requests on every run
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
TABLES = ("transcripts", "extractions", "batches", "api_keys", "labels")


@pytest.fixture
def fuzz_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "api": settings.api.model_copy(
                update={"max_batch_items": 50, "max_text_chars": 5000, "max_body_bytes": 200_000}
            ),
            # Keys have their own tests (test_auth.py); here every route is open.
            "auth": settings.auth.model_copy(update={"required": False}),
            # The one heartbeat seed_results writes keeps a worker live for the whole test.
            "broker": settings.broker.model_copy(update={"heartbeat_interval_s": 300}),
        }
    )


def seed_results(settings: Settings, client: Any) -> None:
    """Four calls in a batch, extracted by the FakeBackend: the read endpoints have rows to
    return (and their schema to match). `client` is a TestClient or a schemathesis ASGI client."""
    records = [
        {**call, "occurred_at": f"2026-03-{1 + 7 * i:02d}T09:00:00Z"}
        for i, call in enumerate(CALLS[:4])
    ]
    response = client.post("/v1/batches", json=records)
    assert response.status_code == 202, response.text
    engine = build_engine(settings)
    # A live worker on both queues (its heartbeat): /readyz is ready, as in a healthy service.
    worker = WorkerIdentity("fuzz@host:1", "host", 1, "interactive,batch", "fake", "f", "v")
    Heartbeat(build_sessionmaker(engine), worker, 300).beat()
    with engine.connect() as connection:
        ids = connection.execute(
            text("SELECT id FROM transcripts WHERE batch_id = :b"), {"b": response.json()["id"]}
        ).scalars()
        ids = list(ids)
    extractor = Extractor.from_settings(settings, backend=FakeBackend())
    store = ExtractionStore(build_sessionmaker(engine))
    for transcript_id in ids:
        assert (
            run_extraction(
                store,
                transcript_id,
                extractor,
                lease_s=60,
                taxonomy_version=extractor.taxonomy.version,
            )
            == "succeeded"
        )
    store.close()
    engine.dispose()


# ---- schemathesis over the whole OpenAPI document ------------------------------------------


def build_schema() -> Any:
    """The document the app serves (built without a database: the routes do not depend on one),
    loaded at collection time so each operation is its own test; the requests go to the
    fixture's app, on the test database."""
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "generation": {
                "mode": "all",
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
            },
        }
    )
    document = create_app(Settings(auth={"required": False}), queue=FakeTaskQueue()).openapi()
    return schemathesis.openapi.from_dict(document, config=config)


schema = build_schema()


# NDJSON batches are documented as a string: send the generated text as it is.
schemathesis.serializer.alias("application/x-ndjson", "text/plain")


class _Summary:
    """Prints the fuzzing counts in pytest's closing summary."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        terminalreporter.section("API fuzzing")
        for line in self.lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="module")
def fuzz_stats(request: pytest.FixtureRequest) -> Iterator[dict[str, Counter[str]]]:
    """Requests sent per operation (and body type), statuses seen; printed after the module."""
    stats: dict[str, Counter[str]] = {"operations": Counter(), "statuses": Counter()}
    yield stats
    operations, statuses = stats["operations"], stats["statuses"]
    if not operations:
        return
    lines = [
        f"schemathesis {schemathesis.__version__}: {sum(operations.values())} requests over "
        f"{len(operations)} operations; statuses {dict(sorted(statuses.items()))}",
        *(f"  {count:5d}  {label}" for label, count in sorted(operations.items())),
    ]
    request.config.pluginmanager.register(_Summary(lines), "callx-fuzz-summary")
    if any(label.startswith("POST /v1/batches") for label in operations):
        assert operations["POST /v1/batches [application/json]"] > 0, lines


@pytest.fixture
def fuzz_app(fuzz_settings: Settings, clean_db: None) -> Iterator[FastAPI]:
    """The app on the test database, with calls and their extractions already there."""
    app = create_app(fuzz_settings, queue=FakeTaskQueue())  # type: ignore[arg-type]
    with asgi.get_client(app) as client:
        seed_results(fuzz_settings, client)
    yield app
    asgi.shutdown_lifespans()  # the engine is disposed: no connection outlives the test


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=timedelta(seconds=5),
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_as_documented(
    case: schemathesis.Case, fuzz_app: FastAPI, fuzz_stats: dict[str, Counter[str]]
) -> None:
    response = case.call_and_validate(checks=CHECKS, app=fuzz_app)
    label = case.operation.label
    if case.media_type is not None:
        label += f" [{case.media_type}]"
    fuzz_stats["operations"][label] += 1
    fuzz_stats["statuses"][str(response.status_code)] += 1


# ---- SQL-looking strings in every query parameter ------------------------------------------

SQL_LIKE = [
    "' OR 1=1 --",
    "'; DROP TABLE transcripts; --",
    '" UNION SELECT id FROM transcripts --',
    "1) OR (1=1",
    "'); DELETE FROM batches; --",
    "$$; TRUNCATE extractions; $$",
    "' OR pg_sleep(2) IS NULL --",
    "%",
    "_",
    "\\'; --",
    "é' OR 'é'='é",
    "＇ OR １=１ −− ʼ; DROP TABLE api_keys",
]

# How each GET query parameter must answer an SQL-looking value. Lookups find nothing (404),
# filters match nothing (200, empty), typed parameters refuse it (422, never a 5xx).
QUERY_PARAMETERS: dict[tuple[str, str], str] = {
    ("/v1/transcripts", "external_id"): "not found",
    ("/v1/transcripts", "source"): "not found",
    ("/v1/extractions", "reason"): "refused",  # not a code of the taxonomy
    ("/v1/extractions", "product"): "matches nothing",
    ("/v1/extractions", "since"): "refused",
    ("/v1/extractions", "until"): "refused",
    ("/v1/extractions", "limit"): "refused",
    ("/v1/extractions", "cursor"): "refused",
    ("/v1/extractions", "batch_id"): "refused",  # not a UUID
    ("/v1/extractions", "source"): "matches nothing",
    ("/v1/extractions", "language"): "refused",
    ("/v1/extractions", "status"): "refused",
    ("/v1/extractions", "min_confidence"): "refused",
    ("/v1/extractions", "max_confidence"): "refused",
    ("/v1/extractions", "taxonomy_version"): "matches nothing",
    ("/v1/extractions", "review"): "refused",  # not a review state
    ("/v1/analytics/reasons", "source"): "matches nothing",
    ("/v1/analytics/reasons", "taxonomy_version"): "matches nothing",
    ("/v1/analytics/products", "source"): "matches nothing",
    ("/v1/analytics/products", "taxonomy_version"): "matches nothing",
    ("/readyz", "workers"): "refused",  # not a boolean
    ("/v1/analytics/reasons", "bucket"): "refused",
    ("/v1/analytics/reasons", "since"): "refused",
    ("/v1/analytics/reasons", "until"): "refused",
    ("/v1/analytics/products", "reason"): "refused",
    ("/v1/analytics/products", "since"): "refused",
    ("/v1/analytics/products", "until"): "refused",
    ("/v1/analytics/products", "limit"): "refused",
    ("/v1/review", "reason"): "refused",
    ("/v1/review", "source"): "matches nothing",
    ("/v1/review", "since"): "refused",
    ("/v1/review", "limit"): "refused",
    ("/v1/review", "cursor"): "refused",
    ("/v1/quality", "since"): "refused",
    ("/v1/quality", "until"): "refused",
    ("/v1/quality", "model"): "counts nothing",
    ("/v1/quality", "taxonomy_version"): "counts nothing",
    ("/v1/quality", "source"): "counts nothing",
}
# And the ids in paths: not UUIDs, so 422.
PATH_PARAMETERS = {
    "/v1/transcripts/{transcript_id}": "transcript_id",
    "/v1/batches/{batch_id}": "batch_id",
    "/v1/transcripts/{transcript_id}/labels": "transcript_id",
    "/v1/reextractions/{reextraction_id}": "reextraction_id",
}


def test_the_table_covers_every_get_query_parameter() -> None:
    document = create_app(Settings(auth={"required": False}), queue=FakeTaskQueue()).openapi()
    in_spec = {
        (path, parameter["name"])
        for path, item in document["paths"].items()
        if "get" in item
        for parameter in item["get"].get("parameters", [])
        if parameter["in"] == "query"
    }
    assert in_spec == set(QUERY_PARAMETERS)
    with_path_id = {
        path for path, item in document["paths"].items() if "get" in item and "{" in path
    }
    assert with_path_id == set(PATH_PARAMETERS)


def database_state(database_url: str) -> dict[str, Any]:
    """The tables of the public schema and, for ours, every row (as text, in order)."""
    engine = create_engine(database_url)
    with engine.connect() as connection:
        tables = connection.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
        ).scalars()
        state: dict[str, Any] = {"tables": list(tables)}
        for table in TABLES:
            rows = connection.execute(text(f"SELECT t::text FROM {table} t ORDER BY 1")).scalars()
            state[table] = list(rows)
    engine.dispose()
    return state


@pytest.fixture
def seeded_client(fuzz_settings: Settings, clean_db: None) -> Iterator[TestClient]:
    app = create_app(fuzz_settings, queue=FakeTaskQueue())  # type: ignore[arg-type]
    with TestClient(app, raise_server_exceptions=False) as client:
        seed_results(fuzz_settings, client)
        yield client


def _request(
    client: TestClient, path: str, parameter: str, value: str
) -> tuple[dict[str, str], Any]:
    params = {parameter: value}
    if path == "/v1/transcripts" and parameter == "source":
        params["external_id"] = CALLS[0]["external_id"]  # exists in "default", not in `value`
    return params, client.get(path, params=params)


@pytest.mark.parametrize("value", SQL_LIKE)
def test_sql_looking_query_values_are_harmless(
    seeded_client: TestClient, fuzz_settings: Settings, value: str
) -> None:
    client = seeded_client
    # What the filters return without the value: the empty answers below mean "no match".
    assert len(client.get("/v1/extractions").json()["items"]) == 4
    assert len(client.get("/v1/review").json()["items"]) == 4  # the FakeBackend: uncalibrated
    assert client.get("/v1/quality").json()["auto_accepted"]["calls"] == 4
    assert client.get("/v1/analytics/products").json()["items"]
    assert client.get("/v1/transcripts", params={"external_id": CALLS[0]["external_id"]}).is_success
    before = database_state(fuzz_settings.database_url)
    assert set(TABLES) <= set(before["tables"]) and len(before["transcripts"]) == 4

    for (path, parameter), expected in QUERY_PARAMETERS.items():
        params, response = _request(client, path, parameter, value)
        where = f"GET {path} {params}: {response.status_code} {response.text[:300]}"
        assert response.status_code < 500, where
        if expected == "not found":
            assert response.status_code == 404, where
        elif expected == "matches nothing":
            assert response.status_code == 200 and response.json()["items"] == [], where
        elif expected == "counts nothing":
            assert response.status_code == 200, where
            assert response.json()["auto_accepted"]["calls"] == 0, where
        else:
            assert response.status_code == 422, where
    for template, name in PATH_PARAMETERS.items():
        response = client.get(template.format(**{name: quote(value, safe="")}))
        assert response.status_code == 422, (template, value, response.status_code)

    assert database_state(fuzz_settings.database_url) == before


@pytest.mark.parametrize("value", ["\x00", "a\x00b", "\x1b[2J", "x\x7f"])
def test_control_characters_in_text_parameters_are_a_422(
    seeded_client: TestClient, value: str
) -> None:
    """PostgreSQL text cannot hold NUL: these were 500s before the parameters said so."""
    for (path, parameter), expected in QUERY_PARAMETERS.items():
        if expected == "refused":
            continue
        params, response = _request(seeded_client, path, parameter, value)
        assert response.status_code == 422, (path, params, response.status_code, response.text)


# ---- what fuzzing found (each was a 500) ---------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "payload"),
    [
        ("GET", "/v1/extractions", {"until": "0001-01-01T00:00:00+00:01"}),
        ("GET", "/v1/analytics/reasons", {"since": "9999-12-31T23:59:59-00:01"}),
        ("POST", "/v1/transcripts", {"text": "x", "occurred_at": "0001-01-01T00:00:00+01:00"}),
    ],
)
def test_a_datetime_out_of_range_in_utc_is_a_422(
    seeded_client: TestClient, method: str, path: str, payload: dict[str, str]
) -> None:
    if method == "GET":
        response = seeded_client.get(path, params=payload)
    else:
        response = seeded_client.post(path, json=payload)
    assert response.status_code == 422, response.text
    assert "out of range" in response.json()["detail"]


def test_a_batch_record_with_an_unencodable_external_id_is_listed(
    seeded_client: TestClient,
) -> None:
    # JSON can carry a lone surrogate; it cannot be echoed back in UTF-8.
    body = '[{"text": "ok", "external_id": "x\\ud800"}, {"text": "fine"}]'
    response = seeded_client.post(
        "/v1/batches", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 1
    assert [(e["index"], e["external_id"]) for e in response.json()["errors"]] == [(0, None)]


def test_a_batch_mixing_new_and_stored_keys_keeps_the_new_ones(
    seeded_client: TestClient, fuzz_settings: Settings
) -> None:
    """A batch sent again with more records: the known ones are duplicates (or conflicts),
    the new ones stored."""
    known = CALLS[0]
    records = [
        {"text": "Client: une nouvelle panne", "external_id": "new-1"},
        {"text": known["text"], "external_id": known["external_id"]},
        {"text": "another text", "external_id": CALLS[1]["external_id"]},
    ]
    response = seeded_client.post("/v1/batches", json=records)
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (1, 1, 1)
    assert [e["index"] for e in body["errors"]] == [2]
    assert len(database_state(fuzz_settings.database_url)["transcripts"]) == 5
