"""On SQLite (the embedded mode), the product analytics between dates read the day rollup
and the ends of the range from the extractions: the same answers as counting every call."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine

from app.db import analytics as analytics_db
from app.db.migrate import upgrade
from app.db.session import build_sessionmaker
from app.extraction.store import ExtractionStore
from support.factories import add_transcripts, succeeded_outcome

START = datetime(2026, 9, 28, 21, 30, tzinfo=UTC)
PRODUCTS = ["Livebox 6", "LIVEBOX 6", "Fibre 500", "Dyson V15", None]
REASONS = ["breakdown", "billing", "delivery"]


def test_product_counts_between_dates_equal_counting_every_call(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'callx.sqlite3'}"
    upgrade(url)
    engine = create_engine(url)
    sessions = build_sessionmaker(engine)
    ids = add_transcripts(engine, 150, start=START, every_s=307 * 60)
    store = ExtractionStore(sessions)
    for i, transcript_id in enumerate(ids):
        claim = store.claim(transcript_id, lease_s=60, taxonomy_version="test-1")
        assert claim is not None
        outcome = replace(succeeded_outcome(), product=PRODUCTS[i % 5], reason=REASONS[i % 3])
        assert store.store(claim, outcome)
    store.close()

    ranges = [
        (START + timedelta(days=3, hours=5, minutes=11), START + timedelta(days=20, hours=13)),
        (START + timedelta(hours=2, minutes=30), None),
        (None, START + timedelta(days=20, hours=7)),
        (START + timedelta(days=10, hours=4), START + timedelta(days=10, hours=20)),
        (START + timedelta(days=10, hours=20), START + timedelta(days=11, hours=6)),
        (START + timedelta(days=12, hours=2, minutes=30), START + timedelta(days=13)),
    ]
    answered = 0
    with sessions() as session:
        for reason in (None, "billing"):
            for since, until in ranges:
                counted = analytics_db._top_products(
                    session, analytics_db._per_reason_from_extractions(reason, since, until), 20
                )
                answer = analytics_db.product_counts(session, reason, since, until, 20)
                assert answer == counted, (reason, since, until)
                answered += bool(answer)
    engine.dispose()
    assert answered >= 10  # not a comparison of empty answers
