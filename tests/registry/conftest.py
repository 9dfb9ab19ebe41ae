"""The registry's tests: settings with a models directory of their own, on PostgreSQL and
SQLite (review_settings), and a session factory on them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.auth.service import create_api_key
from app.config import Settings
from app.db.session import build_engine, build_sessionmaker, session_scope


@pytest.fixture
def registry(review_settings: Settings, tmp_path: Path) -> Any:
    settings = review_settings.model_copy(update={"models_dir": tmp_path / "models"})
    engine = build_engine(settings)
    yield settings, build_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def keyed(review_settings: Settings, tmp_path: Path) -> Any:
    """Settings that require keys, an engine on them, an `admin` and a `read` key."""
    settings = review_settings.model_copy(
        update={
            "models_dir": tmp_path / "models",
            "auth": review_settings.auth.model_copy(update={"required": True}),
        }
    )
    engine = build_engine(settings)
    with session_scope(build_sessionmaker(engine)) as session:
        admin = create_api_key(session, "admin", "ops")[1]
        reader = create_api_key(session, "read", "ana")[1]
    yield settings, engine, admin, reader
    engine.dispose()
