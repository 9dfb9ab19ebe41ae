"""The registry's tests: settings with a models directory of their own, on PostgreSQL and
SQLite (review_settings), and a session factory on them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.config import Settings
from app.db.session import build_engine, build_sessionmaker


@pytest.fixture
def registry(review_settings: Settings, tmp_path: Path) -> Any:
    settings = review_settings.model_copy(update={"models_dir": tmp_path / "models"})
    engine = build_engine(settings)
    yield settings, build_sessionmaker(engine)
    engine.dispose()
