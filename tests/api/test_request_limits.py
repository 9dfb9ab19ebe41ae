"""Limits that hold on every endpoint (real PostgreSQL, the queue recorded): the body limit
while reading, metadata bounded in bytes, one normalised `source`, ISO 8601 dates only, one
date-range rule, and an `errors` list in every error answer."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from app.config import Settings
from app.main import create_app
from support.fakes import FakeTaskQueue

MAX_BODY = 4096
MAX_METADATA = 1024


@pytest.fixture
def limits_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "api": settings.api.model_copy(
                update={"max_body_bytes": MAX_BODY, "max_metadata_bytes": MAX_METADATA}
            ),
            "auth": settings.auth.model_copy(update={"required": False}),
        }
    )


@pytest.fixture
def client(limits_settings: Settings, clean_db: None) -> Iterator[TestClient]:
    app = create_app(limits_settings, queue=FakeTaskQueue())  # type: ignore[arg-type]
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def stored(settings: Settings) -> list[tuple[str, str | None]]:
    engine = create_engine(settings.database_url)
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT source, external_id FROM transcripts ORDER BY created_at")
        ).all()
    engine.dispose()
    return [(r[0], r[1]) for r in rows]


def assert_problem(body: dict, loc: list[str], kind: str) -> None:
    """A Problem: `detail`, and `errors` saying what and where."""
    assert set(body) == {"detail", "errors"}, body
    assert body["errors"] == [{"loc": loc, "msg": body["detail"], "type": kind}], body


def chunks(total: int, size: int = 1000) -> Iterator[bytes]:
    """A body sent chunked: no Content-Length for the server to check first."""
    sent = 0
    while sent < total:
        piece = min(size, total - sent)
        sent += piece
        yield b"x" * piece


# ---- the body limit, on every endpoint, before parsing -------------------------------------


@pytest.mark.parametrize("path", ["/v1/transcripts", "/v1/batches"])
def test_a_body_over_the_limit_is_a_413_before_it_is_parsed(
    client: TestClient, limits_settings: Settings, path: str
) -> None:
    # Not even JSON: a 422 would mean it was parsed first.
    response = client.post(
        path, content=b"{" * (MAX_BODY + 1), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["detail"] == f"request body of {MAX_BODY + 1} bytes; the limit is 4096"
    assert_problem(response.json(), ["body"], "too_large")
    assert response.headers["x-request-id"]
    # A valid call just over the limit: refused as well, nothing stored.
    record = {"text": "Client: ma box est en panne " + "." * MAX_BODY}
    assert (
        client.post(path, json=record if path == "/v1/transcripts" else [record]).status_code == 413
    )
    assert stored(limits_settings) == []


@pytest.mark.parametrize("path", ["/v1/transcripts", "/v1/batches"])
def test_a_chunked_body_is_counted_as_it_streams(
    client: TestClient, limits_settings: Settings, path: str
) -> None:
    response = client.post(
        path, content=chunks(MAX_BODY * 3), headers={"content-type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.json()["detail"] == "request body over the limit of 4096 bytes"
    assert_problem(response.json(), ["body"], "too_large")
    # Under the limit, chunked is fine.
    body = json.dumps({"text": "Client: ma facture est fausse", "external_id": "c-1"}).encode()
    single = path == "/v1/transcripts"
    ok = client.post(
        path,
        content=iter([body if single else b"[" + body + b"]"]),
        headers={"content-type": "application/json"},
    )
    assert ok.status_code == 202, ok.text
    assert stored(limits_settings) == [("default", "c-1")]


def test_a_get_with_a_large_declared_body_is_refused_unread(client: TestClient) -> None:
    response = client.request("GET", "/v1/extractions", content=b"x" * (MAX_BODY + 1))
    assert response.status_code == 413


# ---- metadata bounded in bytes -------------------------------------------------------------


def test_metadata_over_its_byte_limit_is_refused_single_and_per_record(
    client: TestClient, limits_settings: Settings
) -> None:
    big = {"notes": "é" * 600}  # 600 characters, 1,200 bytes in UTF-8
    single = client.post("/v1/transcripts", json={"text": "Client: bonjour", "metadata": big})
    assert single.status_code == 413
    assert single.json()["detail"].startswith("metadata: 1212 bytes as JSON, the limit is 1024")
    assert_problem(single.json(), ["body", "metadata"], "too_large")
    batch = client.post(
        "/v1/batches",
        json=[
            {"text": "Client: bonjour", "external_id": "big", "metadata": big},
            {"text": "Client: bonsoir", "external_id": "small", "metadata": {"queue": "sav"}},
        ],
    )
    assert batch.status_code == 202
    assert [(e["index"], e["errors"]) for e in batch.json()["errors"]] == [
        (0, ["metadata: 1212 bytes as JSON, the limit is 1024"])
    ]
    # A CSV's extra columns are metadata too.
    csv = "text,external_id,notes\nClient: allo,csv-big," + "n" * 1100 + "\n"
    refused = client.post("/v1/batches", content=csv, headers={"content-type": "text/csv"})
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["errors"][0].startswith("metadata: ")
    assert stored(limits_settings) == [("default", "small")]


# ---- one source, however it is spelled -----------------------------------------------------

# As typed, with a zero-width space, full-width, with spaces and a soft hyphen.
SAME_SOURCE = ["crm", "CRM", "crm\u200b", "\uff43\uff52\uff4d", " Crm\u00ad "]
CYRILLIC = "\u0441rm"  # Cyrillic es, then Latin r and m


def test_a_source_spelled_five_ways_is_one_record(
    client: TestClient, limits_settings: Settings
) -> None:
    text_ = "Client: ma box Livebox 6 ne marche plus"
    answers = [
        client.post("/v1/transcripts", json={"text": text_, "external_id": "x-1", "source": s})
        for s in SAME_SOURCE
    ]
    assert [a.status_code for a in answers] == [202, 200, 200, 200, 200]
    assert {a.json()["id"] for a in answers} == {answers[0].json()["id"]}
    assert answers[0].json()["source"] == "crm"
    look_alike = client.post(
        "/v1/transcripts", json={"text": text_, "external_id": "x-1", "source": CYRILLIC}
    )
    assert look_alike.status_code == 422
    assert "mixes Cyrillic and Latin letters" in look_alike.json()["detail"]
    assert look_alike.json()["errors"][0]["loc"] == ["body", "source"]
    # Looked up by any spelling.
    for spelling in SAME_SOURCE:
        found = client.get("/v1/transcripts", params={"source": spelling, "external_id": "x-1"})
        assert found.status_code == 200 and found.json()["id"] == answers[0].json()["id"]
    assert (
        client.get("/v1/transcripts", params={"source": CYRILLIC, "external_id": "x-1"}).status_code
        == 422
    )
    assert stored(limits_settings) == [("crm", "x-1")]


def test_batches_normalise_sources_in_json_ndjson_and_csv(
    client: TestClient, limits_settings: Settings
) -> None:
    text_ = "Client: je voudrais résilier"
    as_json = [{"text": text_, "external_id": "b-1", "source": s} for s in SAME_SOURCE]
    first = client.post("/v1/batches", json=as_json + [{"text": text_, "source": CYRILLIC}])
    assert first.status_code == 202
    assert (first.json()["accepted"], first.json()["duplicates"]) == (1, 4)
    assert [e["index"] for e in first.json()["errors"]] == [5]
    ndjson = "".join(
        json.dumps({"text": text_, "external_id": "b-1", "source": s}) + "\n" for s in SAME_SOURCE
    )
    again = client.post(
        "/v1/batches", content=ndjson, headers={"content-type": "application/x-ndjson"}
    )
    assert again.status_code == 200 and again.json()["duplicates"] == 5
    csv = "text,external_id,source\n" + "".join(f"{text_},b-1,{s}\n" for s in SAME_SOURCE)
    from_csv = client.post("/v1/batches", content=csv, headers={"content-type": "text/csv"})
    assert from_csv.status_code == 200 and from_csv.json()["duplicates"] == 5
    assert stored(limits_settings) == [("crm", "b-1")]


# ---- dates: ISO 8601 strings only; one range rule ------------------------------------------


@pytest.mark.parametrize("value", [1e11, 1764411120, "1764411120", "1e11", True])
def test_occurred_at_must_be_an_iso_8601_string(client: TestClient, value: object) -> None:
    response = client.post("/v1/transcripts", json={"text": "Client: allo", "occurred_at": value})
    assert response.status_code == 422
    assert "ISO 8601" in response.json()["detail"]
    assert response.json()["errors"][0]["loc"] == ["body", "occurred_at"]


def test_iso_8601_forms_are_accepted(client: TestClient) -> None:
    for n, value in enumerate(["2026-11-29T10:12:00Z", "2026-11-29T11:12:00+01:00", "2026-11-29"]):
        response = client.post(
            "/v1/transcripts", json={"text": f"Client: {n}", "occurred_at": value}
        )
        assert response.status_code == 202, response.text
        expected = "2026-11-29T00:00:00Z" if n == 2 else "2026-11-29T10:12:00Z"
        assert response.json()["occurred_at"] == expected


@pytest.mark.parametrize(
    "path", ["/v1/extractions", "/v1/analytics/reasons", "/v1/analytics/products"]
)
def test_one_date_range_rule_everywhere(client: TestClient, path: str) -> None:
    for since, until in [
        ("2026-02-01T00:00:00Z", "2026-01-01T00:00:00Z"),
        ("2026-01-01", "2026-01-01"),
    ]:
        response = client.get(path, params={"since": since, "until": until})
        assert response.status_code == 422, (path, since, until)
        assert response.json()["errors"][0]["loc"] == ["query", "since"]
    assert client.get(path, params={"since": "1764411120"}).status_code == 422
    assert (
        client.get(path, params={"since": "2026-01-01", "until": "2026-01-02"}).status_code == 200
    )


# ---- every error answer has its `errors` list ----------------------------------------------


def test_every_kind_of_error_answer_lists_its_errors(client: TestClient) -> None:
    call = {"text": "Client: bonjour", "external_id": "e-1"}
    assert client.post("/v1/transcripts", json=call).status_code == 202
    conflict = client.post("/v1/transcripts", json={**call, "text": "Client: autre chose"})
    assert conflict.status_code == 409
    assert_problem(conflict.json(), ["body", "external_id"], "conflict")
    not_utf8 = client.post(
        "/v1/transcripts", content=b'{"text": "\xff"}', headers={"content-type": "application/json"}
    )
    assert not_utf8.status_code == 400
    assert not_utf8.json()["detail"] == "the body is not valid UTF-8 (byte 10)"
    assert_problem(not_utf8.json(), ["body"], "unreadable_body")
    unreadable = client.post(
        "/v1/batches", content=b"[{", headers={"content-type": "application/json"}
    )
    assert unreadable.status_code == 422
    assert_problem(unreadable.json(), ["body"], "unreadable_body")
    missing = client.get("/v1/transcripts", params={"external_id": "nope"})
    assert missing.status_code == 404
    assert_problem(missing.json(), ["query", "external_id"], "not_found")
    no_route = client.get("/v2/nothing")
    assert_problem(no_route.json(), ["path"], "not_found")
    wrong_method = client.delete("/v1/extractions")
    assert wrong_method.status_code == 405
    assert_problem(wrong_method.json(), [], "method_not_allowed")
    bad_cursor = client.get("/v1/extractions", params={"cursor": "!!!"})
    assert_problem(bad_cursor.json(), ["query", "cursor"], "invalid")
    too_many = client.get("/v1/extractions", params={"limit": 100_000})
    assert_problem(too_many.json(), ["query", "limit"], "invalid")
