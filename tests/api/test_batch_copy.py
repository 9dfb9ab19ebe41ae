"""POST /v1/batches on PostgreSQL stores new calls with one binary COPY; when a key is already
stored, it falls back to INSERT .. ON CONFLICT DO NOTHING. Both must answer and store exactly
as one INSERT per call would."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from app.config import Settings
from app.main import create_app
from support.fakes import FakeTaskQueue


@pytest.fixture
def queue() -> FakeTaskQueue:
    return FakeTaskQueue()


@pytest.fixture
def client(settings: Settings, queue: FakeTaskQueue, clean_db: None) -> Iterator[TestClient]:
    app_settings = settings.model_copy(
        update={"auth": settings.auth.model_copy(update={"required": False})}
    )
    with TestClient(create_app(app_settings, queue=queue)) as test_client:  # type: ignore[arg-type]
        yield test_client


def _rows(database_url: str, where: str = "true") -> dict[str, dict[str, Any]]:
    engine = create_engine(database_url)
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT external_id, source, text, text_sha256, language, occurred_at, "
                "metadata::text AS metadata, batch_id, queue, status, runs, lease_until, "
                f"claim_token, id FROM transcripts WHERE {where}"
            )
        ).mappings()
        result = {r["external_id"]: dict(r) for r in rows}
    engine.dispose()
    return result


AWKWARD = {
    "text": 'Agent:\tBonjour\\n "quoted" \\\\ backslash\r\nClient: ça marche pas 🙂 €\u2028fin',
    "language": "fr-FR",
    "occurred_at": "2026-03-29T01:30:00.123456+02:00",
    "metadata": {"agent": "Zoé", "nested": {"list": [1, 2.5, None, True, "é"]}, "n": 12},
}


def test_copy_stores_what_insert_stores(
    client: TestClient, queue: FakeTaskQueue, database_url: str
) -> None:
    # The same call, alone (INSERT) and in a batch (COPY), with characters that need care.
    single = client.post("/v1/transcripts", json={**AWKWARD, "external_id": "one"})
    assert single.status_code == 202
    batch = client.post(
        "/v1/batches",
        json=[{**AWKWARD, "external_id": "many-0"}, {"text": "no id, no metadata"}]
        + [{"text": f"call {i}", "external_id": f"many-{i}"} for i in range(1, 5)],
    )
    assert batch.status_code == 202 and batch.json()["accepted"] == 6
    rows = _rows(database_url)
    one, copied = rows["one"], rows["many-0"]
    for column in ("source", "text", "text_sha256", "language", "occurred_at", "metadata"):
        assert one[column] == copied[column], column
    assert (copied["queue"], copied["status"], copied["runs"]) == ("batch", "queued", 0)
    assert copied["lease_until"] is None and copied["claim_token"] is None
    assert str(copied["batch_id"]) == batch.json()["id"]
    assert rows[None]["metadata"] == "{}" and rows[None]["source"] == "default"
    # Everything accepted was queued, once, with the ids that were stored.
    batch_ids = {str(r["id"]) for k, r in rows.items() if k != "one"}
    assert {i for i, q in queue.sent if q == "batch"} == batch_ids


def test_keys_already_stored_fall_back_to_insert(
    client: TestClient, queue: FakeTaskQueue, database_url: str
) -> None:
    first = client.post(
        "/v1/batches", json=[{"text": f"call {i}", "external_id": f"k{i}"} for i in range(5)]
    )
    assert first.status_code == 202 and first.json()["accepted"] == 5
    queue.sent.clear()
    second = client.post(
        "/v1/batches",
        json=[
            {"text": "call 0", "external_id": "k0"},  # stored, same text: duplicate
            {"text": "other text", "external_id": "k1"},  # stored, other text: conflict
            {"text": "new call", "external_id": "n1"},
            {"text": "another new call", "external_id": "n2"},
            {"text": "new call", "external_id": "n1"},  # repeated in the batch: duplicate
            {"text": ""},  # invalid
            {"text": "no id"},
        ],
    )
    assert second.status_code == 202, second.text
    body = second.json()
    assert (body["received"], body["accepted"], body["duplicates"], body["rejected"]) == (
        7,
        3,
        2,
        2,
    )
    assert [(e["index"], e["external_id"]) for e in body["errors"]] == [(1, "k1"), (5, None)]
    assert "different text" in body["errors"][0]["errors"][0]
    rows = _rows(database_url)
    assert len(rows) == 5 + 3
    new = {k: r for k, r in rows.items() if str(r["batch_id"]) == body["id"]}
    assert set(new) == {"n1", "n2", None}
    assert sorted(i for i, _ in queue.sent) == sorted(str(r["id"]) for r in new.values())
    assert rows["k1"]["text"] == "call 1"  # the conflict changed nothing

    # Nothing new at all: 200, no batch left behind.
    again = client.post("/v1/batches", json=[{"text": "call 2", "external_id": "k2"}] * 2)
    assert again.status_code == 200
    assert (again.json()["accepted"], again.json()["duplicates"], again.json()["id"]) == (
        0,
        2,
        None,
    )
    engine = create_engine(database_url)
    with engine.connect() as connection:
        batches = connection.execute(text("SELECT count(*) FROM batches")).scalar_one()
    engine.dispose()
    assert batches == 2
