"""On SQLite (the embedded mode), the analytics read the day rollups and the ends of the range
from the extractions: the same answers as counting every call's answer, before and after
human labels correct some of them."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text

from app.db import analytics as analytics_db
from app.db.migrate import upgrade
from app.db.rollups import rebuild_rollups
from app.db.session import build_sessionmaker, session_scope
from app.extraction.store import ExtractionStore
from app.review.service import Reviewer, write_label
from schemas.review import LabelWrite
from schemas.taxonomy import load_taxonomy
from support.factories import add_transcripts, succeeded_outcome

START = datetime(2026, 9, 28, 21, 30, tzinfo=UTC)
PRODUCTS = ["Livebox 6", "LIVEBOX 6", "Fibre 500", "Dyson V15", None]
REASONS = ["breakdown", "billing", "delivery"]


def _direct_reasons(engine: Engine, since: Any, until: Any) -> list[tuple[str, str, int]]:
    conditions = "is_current AND answer_reason IS NOT NULL"
    if since is not None:
        conditions += f" AND occurred_at >= '{since.replace(tzinfo=None).isoformat(' ')}'"
    if until is not None:
        conditions += f" AND occurred_at < '{until.replace(tzinfo=None).isoformat(' ')}'"
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                f"SELECT date(occurred_at), answer_reason, count(*) FROM extractions "
                f"WHERE {conditions} GROUP BY 1, 2 ORDER BY 1, 2"
            )
        )
        return [(day, reason, count) for day, reason, count in rows]


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
        # A whole month (October, from product_month_counts) with days and parts around it.
        (START + timedelta(hours=2, minutes=30), START + timedelta(days=35, hours=11)),
    ]
    taxonomy = load_taxonomy(None).model_copy(update={"version": "t"})  # succeeded_outcome()'s
    answered = 0
    for labelled in (False, True):
        if labelled:  # a third of the calls corrected by a person
            for n, transcript_id in enumerate(ids[::3]):
                with session_scope(sessions) as session:
                    write_label(
                        session,
                        transcript_id,
                        LabelWrite(reason=("other", "billing")[n % 2], product=PRODUCTS[n % 4]),
                        Reviewer("test"),
                        taxonomy,
                    )
        with sessions() as session:
            for reason in (None, "billing", "other"):
                for since, until in ranges:
                    counted = analytics_db._top_products(
                        session, analytics_db._per_reason_from_extractions(reason, since, until), 20
                    )
                    answer = analytics_db.product_counts(session, reason, since, until, 20)
                    assert answer == counted, (reason, since, until)
                    answered += bool(answer)
            for since, until in [(None, None), *ranges]:
                by_day = analytics_db.reason_counts(session, "day", since, until)
                assert [(str(d), r, c) for d, r, c in by_day] == _direct_reasons(
                    engine, since, until
                ), (since, until)
        kept = _rollup_rows(engine)
        with sessions.begin() as session:
            rebuild_rollups(session)
        assert _rollup_rows(engine) == kept
    engine.dispose()
    assert answered >= 20  # not a comparison of empty answers


def _rollup_rows(engine: Engine) -> list[set[Any]]:
    with engine.connect() as connection:
        return [
            set(connection.execute(text(f"SELECT * FROM {table} WHERE calls <> 0")))
            for table in (
                "reason_day_counts",
                "product_reason_counts",
                "product_day_counts",
                "product_month_counts",
            )
        ]
