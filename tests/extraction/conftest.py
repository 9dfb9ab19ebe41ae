"""What the extraction tests share: the store's tests run on PostgreSQL and on SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine

from app.db.migrate import upgrade


@pytest.fixture(params=["postgresql", "sqlite"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An empty database built by the migrations: the test PostgreSQL, or a SQLite file."""
    if request.param == "postgresql":
        request.getfixturevalue("clean_db")
        url = request.getfixturevalue("database_url")
    else:
        url = f"sqlite:///{tmp_path / 'callx.sqlite3'}"
        upgrade(url)
    engine = create_engine(url)
    yield engine
    engine.dispose()
