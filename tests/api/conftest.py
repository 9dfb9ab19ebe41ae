"""What the API tests of this folder share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from support.fakes import FakeTaskQueue


@pytest.fixture
def open_client(settings: Settings, clean_db: None) -> Iterator[TestClient]:
    """The app without API keys on the test database (empty), the queue recorded only."""
    open_api = settings.model_copy(
        update={"auth": settings.auth.model_copy(update={"required": False})}
    )
    with TestClient(create_app(open_api, queue=FakeTaskQueue())) as test_client:  # type: ignore[arg-type]
        yield test_client
