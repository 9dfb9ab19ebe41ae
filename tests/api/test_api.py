"""The REST API on real PostgreSQL, with the queue recorded instead of sent (FakeTaskQueue),
and extractions run in-process by the real service code with the FakeBackend."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.models import Extraction, Transcript
from app.db.session import build_engine
from app.main import create_app
from support.calls import CALLS
from support.factories import extract_stored
from support.fakes import FakeTaskQueue


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "api": settings.api.model_copy(
                update={"max_batch_items": 50, "max_text_chars": 5000, "max_body_bytes": 200_000}
            ),
            # API keys have their own tests (test_auth.py); here the API runs without them.
            "auth": settings.auth.model_copy(update={"required": False}),
        }
    )


@pytest.fixture
def queue() -> FakeTaskQueue:
    return FakeTaskQueue()


@pytest.fixture
def client(api_settings: Settings, queue: FakeTaskQueue, clean_db: None) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings, queue=queue)) as test_client:  # type: ignore[arg-type]
        yield test_client


def count_rows(database_url: str, table: str) -> int:
    engine = create_engine(database_url)
    with engine.connect() as connection:
        value = connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
    engine.dispose()
    return int(value)


def process_all(settings: Settings, ids: list[str]) -> list[str]:
    return extract_stored(settings, ids)


# ---- submission ---------------------------------------------------------------------------


def test_submit_queues_after_commit_and_is_idempotent(
    client: TestClient, queue: FakeTaskQueue
) -> None:
    created = client.post(
        "/v1/transcripts", json={"text": "Client: ma box est en panne", "external_id": "a1"}
    )
    assert created.status_code == 202
    body = created.json()
    assert body["status"] == "queued" and body["source"] == "default" and body["extraction"] is None
    assert queue.sent == [(body["id"], "interactive")]
    again = client.post(
        "/v1/transcripts", json={"text": "Client: ma box est en panne", "external_id": "a1"}
    )
    assert again.status_code == 200 and again.json()["id"] == body["id"]
    assert len(queue.sent) == 1  # not queued twice
    other_source = client.post(
        "/v1/transcripts",
        json={"text": "Client: ma box est en panne", "external_id": "a1", "source": "crm2"},
    )
    assert other_source.status_code == 202 and other_source.json()["id"] != body["id"]


def test_same_external_id_with_other_text_is_a_409(client: TestClient) -> None:
    client.post("/v1/transcripts", json={"text": "first call", "external_id": "dup"})
    conflict = client.post("/v1/transcripts", json={"text": "second call", "external_id": "dup"})
    assert conflict.status_code == 409
    assert "dup" in conflict.json()["detail"] and "different text" in conflict.json()["detail"]


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        ({"text": ""}, "text"),
        ({"text": "   \n "}, "text"),
        ({"text": 42}, "text"),
        ({}, "text"),
        ({"text": "ok", "occurred_at": "yesterday"}, "occurred_at"),
        ({"text": "ok", "extrenal_id": "x"}, "extrenal_id"),  # other fields: metadata
        ({"text": "ok", "language": "french!"}, "language"),
        ({"text": "bad \x00 byte"}, "text"),
        ({"text": "ok", "metadata": [1, 2]}, "metadata"),
    ],
)
def test_invalid_single_submissions_say_what_and_where(
    client: TestClient, api_settings: Settings, payload: dict, where: str
) -> None:
    response = client.post("/v1/transcripts", json=payload)
    assert response.status_code == 422, response.text
    body = response.json()
    assert where in body["detail"]
    assert any(where in ".".join(e["loc"]) for e in body["errors"])
    assert count_rows(api_settings.database_url, "transcripts") == 0


def test_invalid_json_and_oversized_text(client: TestClient, api_settings: Settings) -> None:
    broken = client.post(
        "/v1/transcripts",
        content=b'{"text": "unterminated',
        headers={"content-type": "application/json"},
    )
    assert broken.status_code == 422 and "json" in broken.json()["detail"].lower()
    # Where the JSON breaks is a character of the body, said as one.
    comma = client.post(
        "/v1/transcripts", content=b'{"text": "x",}', headers={"content-type": "application/json"}
    )
    assert comma.json()["errors"][0]["loc"] == ["body"]
    assert comma.json()["errors"][0]["msg"].startswith("invalid JSON at character 14 (")  # from 1
    # A body that is not JSON at all: the content type it came with is named.
    for headers, said in [
        ({"content-type": "text/plain"}, "not text/plain"),
        ({}, "no Content-Type"),
    ]:
        plain = client.post("/v1/transcripts", content=b"Client: hello", headers=headers)
        assert plain.status_code == 422 and said in plain.json()["detail"], plain.text
        assert "sent as application/json" in plain.json()["detail"]
    too_long = client.post("/v1/transcripts", json={"text": "x" * 5001})
    assert too_long.status_code == 413
    assert "5001 characters" in too_long.json()["detail"] and "5000" in too_long.json()["detail"]
    assert count_rows(api_settings.database_url, "transcripts") == 0


# ---- batches ------------------------------------------------------------------------------


def test_a_json_batch_accepts_the_good_and_lists_the_bad(
    client: TestClient, queue: FakeTaskQueue, api_settings: Settings
) -> None:
    records = [
        {"text": "Client: facture trop élevée", "external_id": "b1"},
        {"text": "", "external_id": "b2"},
        "not an object",
        {"text": "Customer: where is my parcel", "external_id": "b3", "language": "en"},
        {"text": "Customer: same id, other text", "external_id": "b1"},
        {"text": "Client: facture trop élevée", "external_id": "b1"},
    ]
    response = client.post("/v1/batches", json=records)
    assert response.status_code == 202
    body = response.json()
    assert (body["received"], body["accepted"], body["duplicates"], body["rejected"]) == (
        6,
        2,
        1,
        3,
    )
    assert [e["index"] for e in body["errors"]] == [1, 2, 4]
    assert "text" in body["errors"][0]["errors"][0]
    assert "expected a JSON object" in body["errors"][1]["errors"][0]
    assert "different text" in body["errors"][2]["errors"][0]
    assert sorted(q for _, q in queue.sent) == ["batch", "batch"]
    progress = client.get(f"/v1/batches/{body['id']}").json()
    assert progress["counts"] == {"queued": 2, "running": 0, "succeeded": 0, "failed": 0}
    assert progress["done"] is False and progress["accepted"] == 2
    assert count_rows(api_settings.database_url, "transcripts") == 2


def test_ndjson_and_csv_batches_report_broken_lines(client: TestClient) -> None:
    ndjson = b'{"text": "un"}\n{"text": \n\n{"text": "trois"}\n\xff\xfe\n'
    response = client.post(
        "/v1/batches", content=ndjson, headers={"content-type": "application/x-ndjson"}
    )
    body = response.json()
    assert response.status_code == 202 and body["accepted"] == 2
    assert [(e["line"], e["index"]) for e in body["errors"]] == [(2, 1), (5, 3)]
    assert "UTF-8" in body["errors"][1]["errors"][0]
    csv_body = b'external_id,text,agent\nc1,"Client: bonjour, panne",alice\nc2,too,many,fields\n'
    response = client.post("/v1/batches", content=csv_body, headers={"content-type": "text/csv"})
    body = response.json()
    assert body["accepted"] == 1 and body["errors"][0]["line"] == 3
    assert "expected 3 fields" in body["errors"][0]["errors"][0]
    # A quote left open: the record is refused, not merged with the lines after it.
    csv_body = b'external_id,text\nm1,"Client: ma box ne marche plus\nm2,hello\n'
    response = client.post("/v1/batches", content=csv_body, headers={"content-type": "text/csv"})
    body = response.json()
    assert response.status_code == 422 and body["accepted"] == 0 and body["rejected"] == 1
    assert "opened on line 2 is never closed" in body["errors"][0]["errors"][0]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b"[" * 100_000, "application/json", 422, "nested"),
        (b'{"text": "not an array"}', "application/json", 422, "array"),
        (b"\xff\xfe[]", "application/json", 422, "UTF-8"),
        (b"<xml/>", "application/xml", 422, "content type"),
        (json.dumps([{"text": "x"}] * 51).encode(), "application/json", 413, "limit is 50"),
        (b" " * 200_001, "application/json", 413, "limit"),
        (b"[]", "application/json", 422, "holds no records"),
        (b"external_id,text\n\n", "text/csv", 422, "holds no records"),
        (b"", "application/x-ndjson", 422, "holds no records"),
    ],
)
def test_unreadable_or_oversized_batches_write_nothing(
    client: TestClient,
    api_settings: Settings,
    body: bytes,
    content_type: str,
    status: int,
    message: str,
) -> None:
    response = client.post("/v1/batches", content=body, headers={"content-type": content_type})
    assert response.status_code == status, response.text[:300]
    assert message in response.json()["detail"]
    assert count_rows(api_settings.database_url, "transcripts") == 0
    assert count_rows(api_settings.database_url, "batches") == 0


def test_a_batch_with_nothing_valid_is_a_422_with_the_list(
    client: TestClient, api_settings: Settings
) -> None:
    response = client.post("/v1/batches", json=[{"text": ""}, {"nope": 1}, {"text": " \n "}])
    assert response.status_code == 422
    assert response.json()["rejected"] == 3 and response.json()["id"] is None
    # Said for a person: not pydantic's "Value error, " prefix.
    assert [e["errors"] for e in response.json()["errors"]][2] == ["text: text is empty"]
    assert count_rows(api_settings.database_url, "batches") == 0


# ---- results, idempotent processing, listing, analytics -----------------------------------


def test_processing_is_idempotent_and_results_are_listed(
    client: TestClient, queue: FakeTaskQueue, api_settings: Settings
) -> None:
    records = [
        {**call, "occurred_at": f"2026-10-{1 + 7 * i:02d}T09:00:00Z"}
        for i, call in enumerate(CALLS[:4])
    ]
    batch = client.post("/v1/batches", json=records).json()
    ids = [i for i, _ in queue.sent]
    assert process_all(api_settings, ids) == ["succeeded"] * 4
    # A redelivered task for a finished transcript does nothing.
    assert process_all(api_settings, ids[:1]) == ["skipped"]
    engine = build_engine(api_settings)
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Extraction)) == 4
    engine.dispose()
    assert client.get(f"/v1/batches/{batch['id']}").json()["done"] is True

    got = client.get(f"/v1/transcripts/{ids[0]}").json()
    assert got["status"] == "succeeded"
    assert set(got["extraction"]) >= {
        "product",
        "reason",
        "backend",
        "model",
        "prompt_version",
        "taxonomy_version",
        "latency_ms",
        "prompt_tokens",
        "completion_tokens",
        "attempts",
        "truncated",
        "error",
        "confidence_calibrated",
    }
    assert got["extraction"]["backend"] == "fake"
    assert got["extraction"]["confidence_calibrated"] is False  # the fake backend has no card

    pages, cursor = [], None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/extractions", params=params).json()
        pages.append(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    listed = [item["occurred_at"] for page in pages for item in page]
    assert [len(p) for p in pages] == [3, 1] and listed == sorted(listed, reverse=True)
    since = client.get("/v1/extractions", params={"since": "2026-10-08T00:00:00Z"}).json()["items"]
    assert len(since) == 3
    by_reason = client.get("/v1/extractions", params={"reason": "billing"}).json()["items"]
    assert all(i["extraction"]["reason"] == "billing" for i in by_reason)

    weeks = client.get("/v1/analytics/reasons", params={"bucket": "week"}).json()["items"]
    assert sum(i["count"] for i in weeks) == 4
    assert len({i["bucket"] for i in weeks}) == 4  # one call a week
    assert all(datetime.fromisoformat(i["bucket"]).weekday() == 0 for i in weeks)  # Mondays
    months = client.get("/v1/analytics/reasons", params={"bucket": "month"}).json()["items"]
    assert {i["bucket"][:10] for i in months} == {"2026-10-01"}


def test_a_lost_lease_is_retaken_and_a_held_one_is_not(
    api_settings: Settings, client: TestClient, queue: FakeTaskQueue
) -> None:
    client.post("/v1/transcripts", json={"text": "Client: panne de frigo"})
    transcript_id = uuid.UUID(queue.sent[0][0])
    engine = build_engine(api_settings)
    with Session(engine) as session, session.begin():
        row = session.get(Transcript, transcript_id)
        assert row is not None
        row.status, row.lease_until = "running", datetime(2099, 1, 1, tzinfo=UTC)
    assert process_all(api_settings, [str(transcript_id)]) == ["skipped"]  # someone holds it
    with Session(engine) as session, session.begin():
        row = session.get(Transcript, transcript_id)
        assert row is not None
        row.lease_until = datetime(2000, 1, 1, tzinfo=UTC)
    assert process_all(api_settings, [str(transcript_id)]) == ["succeeded"]  # lease expired
    engine.dispose()


def test_lookups_and_query_errors(client: TestClient) -> None:
    assert client.get(f"/v1/transcripts/{uuid.uuid4()}").status_code == 404
    assert client.get("/v1/transcripts/not-a-uuid").status_code == 422
    missing = client.get("/v1/transcripts", params={"external_id": "nope"})
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]
    assert client.get("/v1/extractions", params={"limit": 100_000}).status_code == 422
    assert client.get("/v1/extractions", params={"cursor": "!!!"}).status_code == 422
    assert client.get("/v1/analytics/reasons", params={"bucket": "year"}).status_code == 422
    bad_range = client.get(
        "/v1/analytics/products",
        params={"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
    )
    assert bad_range.status_code == 422
    assert client.get(f"/v1/batches/{uuid.uuid4()}").status_code == 404


def test_health_and_docs(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "checks": {}}
    ready = client.get("/readyz", params={"workers": "false"})
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "broker": "ok"}
    # No worker runs in this test: the whole service is not ready, and says why.
    whole = client.get("/readyz")
    assert whole.status_code == 503
    assert whole.json()["checks"]["queue:interactive"].startswith("no live worker")
    spec = client.get("/openapi.json").json()
    assert {"/v1/transcripts", "/v1/batches", "/v1/extractions", "/v1/analytics/reasons"} <= set(
        spec["paths"]
    )
    assert client.get("/docs").status_code == 200


def test_metrics_and_request_ids(client: TestClient, queue: FakeTaskQueue) -> None:
    response = client.post(
        "/v1/transcripts", json={"text": "Client: panne"}, headers={"X-Request-ID": "req-42"}
    )
    assert response.headers["x-request-id"] == "req-42"
    assert len(client.get("/healthz").headers["x-request-id"]) == 32  # made when not given
    text = client.get("/metrics").text
    assert 'callx_transcripts{status="queued"} 1.0' in text
    assert 'callx_queue_depth{queue="interactive"} 1.0' in text
    assert "callx_transcripts_submitted_total" in text
