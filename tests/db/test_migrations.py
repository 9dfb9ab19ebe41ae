"""The schema comes from the migrations, on PostgreSQL and on SQLite, with no drift."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, inspect, text

from app.db.migrate import check, upgrade


def test_postgres_schema_matches_the_models_and_has_the_view(database_url: str) -> None:
    check(database_url)  # alembic check: raises if models and migrations disagree
    engine = create_engine(database_url)
    inspector = inspect(engine)
    assert {"transcripts", "extractions", "batches"} <= set(inspector.get_table_names())
    assert "call_extractions" in inspector.get_view_names()
    indexes = {i["name"] for i in inspector.get_indexes("extractions")}
    assert {
        "uq_extractions_current_transcript",
        "ix_extractions_current_answer_reason_occurred_at",
        "ix_extractions_review_queue",
    } <= indexes
    assert "labels" in inspector.get_table_names()
    with engine.connect() as connection:
        columns = connection.execute(text("SELECT * FROM call_extractions LIMIT 0")).keys()
    assert {
        "transcript_id",
        "product",
        "reason",
        "occurred_at",
        "status",
        "label_reason",
        "answer_reason",
        "review_cause",
    } <= set(columns)
    engine.dispose()


def test_the_same_migrations_build_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new' / 'callx.sqlite3'}"
    upgrade(url)
    check(url)
    engine = create_engine(url)
    assert "call_extractions" in inspect(engine).get_view_names()
    engine.dispose()


def test_sqlite_downgrades_through_the_review_revision_and_back(tmp_path: Path) -> None:
    """0008 rebuilds tables SQLite can only alter by copying (api_keys' scope check,
    extractions' columns and indexes): down to 0007 and up again leaves no drift."""
    from alembic import command

    from app.db.migrate import alembic_config

    url = f"sqlite:///{tmp_path / 'callx.sqlite3'}"
    upgrade(url)
    config = alembic_config(url)
    command.downgrade(config, "0007")
    engine = create_engine(url)
    assert "labels" not in inspect(engine).get_table_names()
    engine.dispose()
    upgrade(url)
    check(url)
