"""GET /v1/extractions' filters (batch, source, language, confidence, status, taxonomy) and the
calls' metadata in every read; the analytics per source and taxonomy version; on real
PostgreSQL, with extractions run in-process by the real service code (FakeBackend)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from app.config import Settings
from app.db.session import build_engine
from app.llm.fake import FakeBackend
from support.factories import extract_stored

BREAKDOWN = "Client: ma box Livebox est en panne, plus rien ne marche"
BILLING = "Customer: I was charged twice on my Fibre 500 invoice"


class ConfidentBackend(FakeBackend):
    """The FakeBackend's answers with a confidence that depends on the call (for the ranges)."""

    def extract(self, request: Any) -> Any:
        answer = super().extract(request)
        return replace(answer, confidence=0.95 if "Livebox" in request.transcript else 0.55)


def extract_all(settings: Settings, ids: list[str], taxonomy_version: str | None = None) -> None:
    """The worker's code on `ids` (ConfidentBackend), with the taxonomy under another version
    if asked."""
    outcomes = extract_stored(settings, ids, ConfidentBackend(), taxonomy_version)
    assert outcomes == ["succeeded"] * len(ids)


def test_filters_return_the_calls_asked_for_with_their_metadata(
    open_client: TestClient, settings: Settings
) -> None:
    batch = open_client.post(
        "/v1/batches",
        json=[
            {
                "external_id": "b1",
                "source": "crm",
                "language": "fr",
                "text": BREAKDOWN,
                "metadata": {"queue": "sav", "agent": 7},
            },
            {"external_id": "b2", "source": "crm", "language": "en", "text": BILLING},
        ],
    ).json()
    single = open_client.post(
        "/v1/transcripts",
        json={
            "external_id": "s1",
            "source": "web",
            "language": "FR",
            "text": BILLING,
            "metadata": {"queue": "web"},
        },
    ).json()
    ids = [*batch["transcript_ids"], single["id"]]
    extract_all(settings, ids)

    def listed(**params: Any) -> list[str]:
        response = open_client.get("/v1/extractions", params=params)
        assert response.status_code == 200, response.text
        return sorted(item["external_id"] for item in response.json()["items"])

    assert listed(batch_id=batch["id"]) == ["b1", "b2"]
    assert listed(source="web") == ["s1"]
    assert listed(language="fr") == ["b1", "s1"]  # case-insensitive
    assert listed(min_confidence=0.9) == ["b1"]
    assert listed(max_confidence=0.6) == ["b2", "s1"]
    assert listed(status="succeeded") == ["b1", "b2", "s1"]
    assert listed(status="failed") == []
    version = open_client.app.state.taxonomy.version  # type: ignore[attr-defined]
    assert listed(taxonomy_version=version) == ["b1", "b2", "s1"]
    assert listed(taxonomy_version="another-1") == []

    item = open_client.get(
        "/v1/extractions", params={"source": "crm", "reason": "breakdown"}
    ).json()
    assert item["items"][0]["metadata"] == {"queue": "sav", "agent": 7}
    assert item["items"][0]["batch_id"] == batch["id"] and item["items"][0]["language"] == "fr"
    read = open_client.get(f"/v1/transcripts/{single['id']}").json()
    assert read["metadata"] == {"queue": "web"}


def test_bad_filters_are_refused_saying_why(open_client: TestClient) -> None:
    for params, where in [
        ({"min_confidence": 1.5}, "min_confidence"),
        ({"min_confidence": 0.8, "max_confidence": 0.2}, "min_confidence"),
        ({"status": "queued"}, "status"),
        ({"batch_id": "not-a-uuid"}, "batch_id"),
        ({"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "since"),
    ]:
        response = open_client.get("/v1/extractions", params=params)
        assert response.status_code == 422, params
        assert where in response.json()["detail"], response.json()


def test_a_query_parameter_the_endpoint_does_not_take_is_refused_not_ignored(
    open_client: TestClient,
) -> None:
    # A misspelt filter would otherwise answer with every call, as if it had been applied.
    for path, params, taken in [
        ("/v1/extractions", {"reasn": "billing"}, "reason"),
        ("/v1/analytics/products", {"sorce": "crm"}, "source"),
        ("/v1/review", {"limit": 5, "Limit": 5}, "limit"),
        ("/v1/models", {"all": "true"}, "no query parameters"),
    ]:
        response = open_client.get(path, params=params)
        assert response.status_code == 422, (path, response.text)
        unknown = next(name for name in params if name != "limit")
        assert response.json()["errors"][0]["loc"] == ["query", unknown]
        assert response.json()["detail"].startswith(f"unknown query parameter {unknown!r}")
        assert taken in response.json()["detail"]
    # The parameters it does take still work, its dependencies' (the page size) included;
    # health probes and the metrics scrape take whatever a prober adds.
    assert open_client.get("/v1/extractions", params={"reason": "billing", "limit": 2}).is_success
    assert open_client.get("/v1/review", params={"limit": 5}).is_success
    assert open_client.get("/healthz", params={"cache": "1"}).status_code == 200


def test_every_v1_route_checks_its_query_parameters_with_its_key(open_client: TestClient) -> None:
    # The check runs in the key's dependency (after it: no key, a 401 first), so each /v1 route
    # must have one.
    for route in open_client.app.routes:  # type: ignore[attr-defined]
        if not (isinstance(route, APIRoute) and route.path.startswith("/v1")):
            continue
        names, pending = [], [route.dependant]
        while pending:
            dependant = pending.pop()
            names.append(getattr(dependant.call, "__name__", ""))
            pending.extend(dependant.dependencies)
        assert any(name.startswith("require_") for name in names), route.path


def test_batch_answer_gives_each_record_its_call(open_client: TestClient) -> None:
    open_client.post("/v1/transcripts", json={"external_id": "known", "text": BILLING})
    answer = open_client.post(
        "/v1/batches",
        json=[
            {"external_id": "new", "text": BREAKDOWN},
            {"external_id": "known", "text": BILLING},  # a duplicate of a stored call
            {"external_id": "bad"},  # no text: rejected
            {"text": BILLING},  # no id: still found by its position
        ],
    ).json()
    ids = answer["transcript_ids"]
    assert len(ids) == 4 and ids[1] is None and ids[2] is None
    assert open_client.get(f"/v1/transcripts/{ids[0]}").json()["external_id"] == "new"
    assert open_client.get(f"/v1/transcripts/{ids[3]}").json()["external_id"] is None


def test_analytics_per_source_and_taxonomy_version(
    open_client: TestClient, settings: Settings
) -> None:
    """Two sources and two taxonomy versions: each slice counts its own calls only, and all
    of them together count every call."""
    ids: dict[tuple[str, str], list[str]] = {}
    for source in ("crm", "web"):
        for n, version in enumerate(("tax-a", "tax-b")):
            texts = [BREAKDOWN] * (n + 1) + [BILLING] * (2 if source == "crm" else 1)
            answer = open_client.post(
                "/v1/batches",
                json=[
                    {"source": source, "text": t, "occurred_at": "2026-03-02T10:00:00Z"}
                    for t in texts
                ],
            ).json()
            ids[source, version] = answer["transcript_ids"]
    # The API queued them for its own taxonomy: mark them for the versions of this test.
    engine = build_engine(settings)
    from sqlalchemy import text as sql

    with engine.begin() as connection:
        for (_, version), transcript_ids in ids.items():
            connection.execute(
                sql("UPDATE transcripts SET taxonomy_version = :v WHERE id = ANY(:ids)"),
                {"v": version, "ids": [uuid.UUID(i) for i in transcript_ids]},
            )
    engine.dispose()
    for (_, version), transcript_ids in ids.items():
        extract_all(settings, transcript_ids, taxonomy_version=version)

    def reasons(**params: Any) -> dict[str, int]:
        answer = open_client.get("/v1/analytics/reasons", params={"bucket": "month", **params})
        assert answer.status_code == 200, answer.text
        return {item["reason"]: item["count"] for item in answer.json()["items"]}

    def products(**params: Any) -> dict[str, int]:
        answer = open_client.get("/v1/analytics/products", params=params)
        assert answer.status_code == 200, answer.text
        return {item["product"].lower(): item["total"] for item in answer.json()["items"]}

    assert reasons() == {"breakdown": 6, "billing": 6}
    assert reasons(source="crm") == {"breakdown": 3, "billing": 4}
    assert reasons(taxonomy_version="tax-b") == {"breakdown": 4, "billing": 3}
    assert reasons(source="web", taxonomy_version="tax-a") == {"breakdown": 1, "billing": 1}
    # Part of a day (the extractions) and whole days (the rollups) agree.
    partial = {"since": "2026-03-02T09:00:00Z", "until": "2026-03-02T11:00:00Z"}
    assert reasons(source="crm", **partial) == {"breakdown": 3, "billing": 4}
    whole = {"since": "2026-03-01T00:00:00Z", "until": "2026-03-05T00:00:00Z"}
    assert products(source="web", **whole) == products(source="web")
    assert sum(products(taxonomy_version="tax-a").values()) + sum(
        products(taxonomy_version="tax-b").values()
    ) == sum(products().values())
    assert sum(products(source="web").values()) < sum(products().values())
