"""The schema comes from the migrations, on PostgreSQL and on SQLite, with no drift."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from app.db.migrate import check, upgrade
from app.db.session import build_sessionmaker, session_scope
from app.extraction.store import ExtractionStore
from app.review.service import Reviewer, write_label
from schemas.review import LabelWrite
from schemas.taxonomy import load_taxonomy
from support.factories import add_transcripts, succeeded_outcome


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
    engine = create_engine(url)
    sessions = build_sessionmaker(engine)
    ids = add_transcripts(engine, 3)
    store = ExtractionStore(sessions)
    for transcript_id in ids:
        claim = store.claim(transcript_id, lease_s=60, taxonomy_version="t")
        assert claim is not None and store.store(claim, succeeded_outcome())
    store.close()
    with session_scope(sessions) as session:
        write_label(
            session,
            ids[0],
            LabelWrite(reason="other"),
            Reviewer("test"),
            load_taxonomy(None).model_copy(update={"version": "t"}),
        )
    config = alembic_config(url)
    # Labels there: the downgrade refuses, saying how to keep them.
    with pytest.raises(RuntimeError, match="export them"):
        command.downgrade(config, "0007")
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM labels"))
    command.downgrade(config, "0007")
    assert "labels" not in inspect(engine).get_table_names()
    # The rollups count the model's answers again (the label's `other` is gone from them).
    with engine.connect() as connection:
        counts = connection.execute(
            text("SELECT reason, sum(calls) FROM reason_day_counts GROUP BY reason")
        ).all()
    assert [tuple(c) for c in counts] == [("breakdown", 3)]
    engine.dispose()
    upgrade(url)
    check(url)


def test_a_promotion_for_one_list_stops_the_downgrade_that_would_make_it_everyones(
    tmp_path: Path,
) -> None:
    """0011's column told a list's promotion from the registry's: 0010 cannot, so the
    downgrade is refused while there is one, and goes down and up again once there is none."""
    from alembic import command

    from app.db.migrate import alembic_config

    url = f"sqlite:///{tmp_path / 'callx.sqlite3'}"
    upgrade(url)
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO adapters (name, sha256, file_name, size_bytes, registered_by, "
                "registered_at) VALUES ('a', :sha, 'a/a.gguf', 1, 't', CURRENT_TIMESTAMP)"
            ),
            {"sha": "0" * 64},
        )
        connection.execute(
            text(
                "INSERT INTO promotions (adapter_id, action, taxonomy_version, forced, "
                "promoted_by, created_at) VALUES (1, 'promote', 'moving-2026-12', false, 't', "
                "CURRENT_TIMESTAMP)"
            )
        )
    config = alembic_config(url)
    with pytest.raises(RuntimeError, match="1 promotion\\(s\\) are for one list only"):
        command.downgrade(config, "0010")
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM promotions WHERE taxonomy_version IS NOT NULL"))
    command.downgrade(config, "0010")
    assert "taxonomy_version" not in {c["name"] for c in inspect(engine).get_columns("promotions")}
    engine.dispose()
    upgrade(url)
    check(url)
