"""The review tests run on PostgreSQL and on SQLite, through the app and the worker's code."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.db.migrate import upgrade
from app.llm.fake import FakeBackend
from app.main import create_app
from support.factories import extract_stored
from support.fakes import FakeTaskQueue


@pytest.fixture(params=["postgresql", "sqlite"])
def review_settings(request: pytest.FixtureRequest, settings: Settings, tmp_path: Path) -> Settings:
    """Settings on an empty database (the test PostgreSQL or a SQLite file), without API keys,
    threshold 0.9 and no audit sample unless a test says otherwise."""
    if request.param == "postgresql":
        request.getfixturevalue("clean_db")
        url = settings.database_url
    else:
        url = f"sqlite:///{tmp_path / 'callx.sqlite3'}"
        upgrade(url)
    return settings.model_copy(
        update={
            "database": settings.database.model_copy(update={"url": url}),
            "auth": settings.auth.model_copy(update={"required": False}),
            "review": settings.review.model_copy(update={"threshold": 0.9, "audit_rate": 0.0}),
        }
    )


@pytest.fixture
def client(review_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(review_settings, queue=FakeTaskQueue())) as test_client:  # type: ignore[arg-type]
        yield test_client


Store = Callable[..., list[str]]


@pytest.fixture
def store_calls(client: TestClient, review_settings: Settings) -> Store:
    """Submit calls (texts, or records) and extract them with the scored FakeBackend, under
    the review settings given (the fixture's by default); returns their ids in order."""

    def store(
        calls: list[Any], *, review: dict[str, Any] | None = None, model: str = "fake-a"
    ) -> list[str]:
        records = [{"text": c} if isinstance(c, str) else c for c in calls]
        response = client.post("/v1/batches", json=records)
        assert response.status_code == 202, response.text
        ids = [str(i) for i in response.json()["transcript_ids"]]
        settings = review_settings
        if review is not None:
            settings = settings.model_copy(
                update={"review": settings.review.model_copy(update=review)}
            )
        extract_stored(settings, ids, backend=FakeBackend(scored=True, model=model))
        return ids

    return store
