"""Re-extraction through the API and the worker's code, on PostgreSQL and SQLite: the calls of
the filter go back to the batch queue, earlier extractions are kept (not current), people's
labels stay the answer, the analytics stay exact, and the same job twice extracts once."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from app.config import Settings
from app.llm.fake import FakeBackend
from support.factories import extract_stored

CALLS = [
    "Client: ma box ne marche plus [confidence=0.5] [reason=breakdown]",
    "Client: facture en double [confidence=0.6] [reason=billing]",
    "Customer: where is my parcel [confidence=0.97] [reason=delivery]",
    "Customer: cancel my plan [confidence=0.4] [reason=cancellation]",
]


def _reasons(client: TestClient) -> Counter[str]:
    totals: Counter[str] = Counter()
    for item in client.get("/v1/analytics/reasons", params={"bucket": "month"}).json()["items"]:
        totals[item["reason"]] += item["count"]
    return totals


def _rows(settings: Settings) -> list[Any]:
    engine = create_engine(settings.database_url)
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT transcript_id, is_current, model FROM extractions ORDER BY created_at")
        ).all()
    engine.dispose()
    return list(rows)


def test_reextracting_the_unsure_calls_keeps_labels_history_and_counts(
    client: TestClient, store_calls: Any, review_settings: Settings
) -> None:
    ids = store_calls(CALLS)  # answered by fake-a
    label = client.put(f"/v1/transcripts/{ids[0]}/label", json={"reason": "other", "version": 0})
    assert label.status_code == 200
    before = _reasons(client)
    assert before == Counter({"other": 1, "billing": 1, "delivery": 1, "cancellation": 1})
    queue = client.app.state.queue  # type: ignore[attr-defined]
    queue.sent.clear()

    made = client.post("/v1/reextractions", json={"max_confidence": 0.7})
    assert made.status_code == 202, made.text
    job = made.json()
    assert job["created"] and job["calls"] == 3 and job["queued"] == 3 and not job["finished"]
    assert sorted(i for i, _ in queue.sent) == sorted([ids[0], ids[1], ids[3]])
    assert {q for _, q in queue.sent} == {"batch"}
    # Submitted again: the same job, nothing sent twice.
    again = client.post("/v1/reextractions", json={"max_confidence": 0.7})
    assert again.status_code == 200 and again.json()["id"] == job["id"]
    assert not again.json()["created"] and len(queue.sent) == 3

    # The worker's code with another model: each chosen call extracted once more.
    outcomes = extract_stored(
        review_settings, [ids[0], ids[1], ids[3]], backend=FakeBackend(scored=True, model="fake-b")
    )
    assert outcomes == ["succeeded"] * 3
    done = client.get(f"/v1/reextractions/{job['id']}").json()
    assert (done["done"], done["queued"], done["running"], done["finished"]) == (3, 0, 0, True)
    rows = _rows(review_settings)
    assert len(rows) == 7  # the four first answers kept, three new
    current = {str(uuid.UUID(str(r[0]))): r[2] for r in rows if r[1]}
    assert current == {ids[0]: "fake-b", ids[1]: "fake-b", ids[2]: "fake-a", ids[3]: "fake-b"}
    # The label is still the answer; the analytics count each call once, as before.
    call = client.get(f"/v1/transcripts/{ids[0]}").json()
    assert call["answer"] == {"reason": "other", "product": None, "by": "label"}
    assert call["extraction"]["model"] == "fake-b"
    assert _reasons(client) == before
    # A message of the job delivered twice: the call is finished, nothing is extracted again.
    assert extract_stored(review_settings, [ids[1]]) == ["skipped"]
    assert len(_rows(review_settings)) == 7


def test_bad_reextraction_requests_are_refused(client: TestClient) -> None:
    bad_reason = client.post("/v1/reextractions", json={"reason": "panne"})
    assert bad_reason.status_code == 422 and "breakdown" in bad_reason.json()["detail"]
    assert client.post("/v1/reextractions", json={"limit": 0}).status_code == 422
    assert client.post("/v1/reextractions", json={"max_confidence": 2}).status_code == 422
    assert client.post("/v1/reextractions", json={"colour": "red"}).status_code == 422
    backwards = client.post(
        "/v1/reextractions",
        json={"since": "2026-12-02T00:00:00Z", "until": "2026-12-01T00:00:00Z"},
    )
    assert backwards.status_code == 422
    unknown = client.get("/v1/reextractions/00000000-0000-0000-0000-000000000000")
    assert unknown.status_code == 404
