"""ExtractionStore: claims and results, group-committed, on PostgreSQL and on SQLite."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from sqlalchemy import Engine, text

from app.db.session import build_sessionmaker
from app.extraction.routing import ReviewPolicy
from app.extraction.store import ExtractionStore
from support.factories import add_transcripts, succeeded_outcome


def _statuses(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT status, count(*) FROM transcripts GROUP BY status"))
        return {status: count for status, count in rows}


def test_many_threads_claim_and_store_each_transcript_once(engine: Engine) -> None:
    ids = add_transcripts(engine, 60)
    store = ExtractionStore(build_sessionmaker(engine), max_batch=16)
    # Every transcript asked for three times at once: redelivered messages, racing workers.
    start = threading.Barrier(30)

    def claim(transcript_id: uuid.UUID) -> bool:
        try:
            start.wait(5)
        except threading.BrokenBarrierError:
            pass
        claim = store.claim(transcript_id, lease_s=60, taxonomy_version="test-1")
        return claim is not None and store.store(claim, succeeded_outcome())

    with ThreadPoolExecutor(30) as pool:
        stored = list(pool.map(claim, ids * 3))
    store.close()
    assert sum(stored) == 60
    assert {i for i, ok in zip(ids * 3, stored, strict=True) if ok} == set(ids)
    assert _statuses(engine) == {"succeeded": 60}
    with engine.connect() as connection:
        counts = connection.execute(
            text("SELECT count(*), count(*) FILTER (WHERE is_current) FROM extractions")
            if engine.dialect.name == "postgresql"
            else text("SELECT count(*), sum(is_current) FROM extractions")
        ).one()
        runs = connection.execute(text("SELECT max(runs) FROM transcripts")).scalar_one()
    assert tuple(counts) == (60, 60) and runs == 1


def test_a_lost_lease_stores_nothing_and_spares_the_rest_of_its_group(engine: Engine) -> None:
    ids = add_transcripts(engine, 3)
    store = ExtractionStore(build_sessionmaker(engine))
    claims = [store.claim(i, lease_s=60, taxonomy_version="test-1") for i in ids]
    assert all(claims)
    # Another worker took the second one over (its lease had run out, say).
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE transcripts SET claim_token = NULL WHERE id = :id"),
            {"id": ids[1] if engine.dialect.name == "postgresql" else ids[1].hex},
        )
    with ThreadPoolExecutor(3) as pool:
        stored = list(pool.map(lambda c: store.store(c, succeeded_outcome()), claims))
    store.close()
    assert stored == [True, False, True]
    assert _statuses(engine) == {"succeeded": 2, "running": 1}


def test_a_new_extraction_replaces_the_current_one_and_keeps_the_old(engine: Engine) -> None:
    (transcript_id,) = add_transcripts(engine, 1)
    store = ExtractionStore(build_sessionmaker(engine))
    first = store.claim(transcript_id, lease_s=60, taxonomy_version="test-1")
    assert first is not None and store.store(first, succeeded_outcome("Router"))
    assert (
        store.claim(transcript_id, lease_s=60, taxonomy_version="test-1") is None
    )  # finished: not claimable
    with engine.begin() as connection:
        connection.execute(text("UPDATE transcripts SET status = 'queued'"))
    second = store.claim(transcript_id, lease_s=60, taxonomy_version="test-1")
    assert second is not None and second.token != first.token
    assert store.store(second, succeeded_outcome("Phone"))
    assert not store.store(second, succeeded_outcome("Phone"))  # the claim is closed
    store.close()
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT product, is_current FROM extractions ORDER BY created_at")
        ).all()
    assert [(p, bool(c)) for p, c in rows] == [("Router", False), ("Phone", True)]


def test_claims_and_results_share_a_transaction_each_caller_gets_its_answer(
    engine: Engine,
) -> None:
    from app.extraction import store as store_module

    ids = add_transcripts(engine, 6)
    first = ExtractionStore(build_sessionmaker(engine))
    claims = [first.claim(i, lease_s=60, taxonomy_version="test-1") for i in ids[:3]]
    first.close()
    assert all(claims)
    # One group: three results, then claims of three new transcripts and of one just stored.
    requests = [
        *(store_module._Result(c, succeeded_outcome()) for c in claims if c is not None),
        *(store_module._ClaimRequest(i, 60, "test-1") for i in ids[3:]),
        store_module._ClaimRequest(ids[0], 60, "test-1"),
    ]
    sessions = build_sessionmaker(engine)
    with sessions.begin() as session:
        answers = store_module._write_group(session, requests, ReviewPolicy())
    assert answers[:3] == [True, True, True]
    assert [a.transcript_id for a in answers[3:6]] == ids[3:]  # type: ignore[union-attr]
    assert answers[6] is None  # claims run first: the transcript was still running then
    assert _statuses(engine) == {"succeeded": 3, "running": 3}


def test_the_review_decision_is_made_on_the_call_stored_text(engine: Engine) -> None:
    # A sure answer whose product the call says is accepted; one whose product it never says
    # goes to people, decided against the stored transcript ("Client: my router N is broken").
    said, unsaid = add_transcripts(engine, 2)
    store = ExtractionStore(build_sessionmaker(engine))
    for transcript_id, product in [(said, "router"), (unsaid, "disposable virtual card")]:
        claim = store.claim(transcript_id, lease_s=60, taxonomy_version="test-1")
        sure = replace(succeeded_outcome(product), confidence=0.99, confidence_calibrated=True)
        assert claim is not None and store.store(claim, sure)
    store.close()
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT product, review_cause, review_priority FROM extractions ORDER BY product")
        ).all()
    assert [tuple(row) for row in rows] == [
        ("disposable virtual card", "product_not_said", 0.9),  # no product confidence: threshold
        ("router", None, None),
    ]
