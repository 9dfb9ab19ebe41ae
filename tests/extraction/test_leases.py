"""Leases held by a worker process: renewed while a call runs, only by the claim that holds
them, and given back on a stop. On PostgreSQL and on SQLite."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, text

from app.db.session import build_sessionmaker
from app.extraction.pipeline import ExtractionOutcome
from app.extraction.service import NOT_STARTED, run_extraction
from app.extraction.store import ExtractionStore
from support.factories import add_transcripts, succeeded_outcome

TAXONOMY = "test-1"


def _row(engine: Engine, transcript_id: uuid.UUID) -> tuple[str, datetime | None, object]:
    key = transcript_id if engine.dialect.name == "postgresql" else transcript_id.hex
    with engine.connect() as connection:
        status, lease_until, token = connection.execute(
            text("SELECT status, lease_until, claim_token FROM transcripts WHERE id = :id"),
            {"id": key},
        ).one()
    if isinstance(lease_until, str):  # SQLite
        lease_until = datetime.fromisoformat(lease_until)
    if lease_until is not None and lease_until.tzinfo is None:
        lease_until = lease_until.replace(tzinfo=UTC)
    return status, lease_until, token


def test_a_call_three_times_as_long_as_its_lease_keeps_it_while_its_worker_lives(
    engine: Engine,
) -> None:
    (transcript_id,) = add_transcripts(engine, 1)
    store = ExtractionStore(build_sessionmaker(engine))
    rival = ExtractionStore(build_sessionmaker(engine))  # another worker, trying all along
    call_ends = threading.Event()
    taken_by_rival: list[bool] = []

    def try_to_take() -> None:
        while not call_ends.wait(0.1):
            taken_by_rival.append(
                rival.claim(transcript_id, 2, taxonomy_version=TAXONOMY) is not None
            )

    def slow_call(_: str, __: str | None) -> ExtractionOutcome:
        rival_thread = threading.Thread(target=try_to_take)
        rival_thread.start()
        # Six seconds with a lease of two: only its renewals keep the call ours.
        call_ends.wait(6)
        call_ends.set()
        rival_thread.join()
        return succeeded_outcome()

    outcome = run_extraction(store, transcript_id, slow_call, lease_s=2, taxonomy_version=TAXONOMY)
    store.close()
    rival.close()
    assert outcome == "succeeded"
    assert taken_by_rival and not any(taken_by_rival)
    assert _row(engine, transcript_id)[0] == "succeeded"


def test_renewal_extends_only_the_leases_still_held_by_their_claim(engine: Engine) -> None:
    ids = add_transcripts(engine, 2)
    store = ExtractionStore(build_sessionmaker(engine))
    claims = [store.claim(i, 60, taxonomy_version=TAXONOMY) for i in ids]
    assert all(claims)
    # The second was taken over by another worker (its lease had run out, say).
    other = uuid.uuid4()
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE transcripts SET claim_token = :token WHERE id = :id"),
            {
                "token": other if engine.dialect.name == "postgresql" else other.hex,
                "id": ids[1] if engine.dialect.name == "postgresql" else ids[1].hex,
            },
        )
    taken_over_lease = _row(engine, ids[1])[1]
    later = datetime.now(UTC) + timedelta(minutes=10)
    assert store.leases.renew(later) == 1
    assert _row(engine, ids[0])[1] == later + timedelta(seconds=60)
    assert _row(engine, ids[1])[1] == taken_over_lease  # not ours any more: left as it is
    assert store.leases.count() == 1  # and no longer renewed
    store.close()


def test_a_stop_gives_back_the_calls_in_hand_and_their_late_results_are_refused(
    engine: Engine,
) -> None:
    ids = add_transcripts(engine, 3)
    store = ExtractionStore(build_sessionmaker(engine))
    claims = [store.claim(i, 60, taxonomy_version=TAXONOMY) for i in ids[:2]]
    assert all(claims) and store.leases.count() == 2
    assert not store.leases.wait_until_none(0.1)  # two calls still running

    released = store.leases.release()

    assert sorted(released) == sorted((i, "batch") for i in ids[:2])
    assert all(_row(engine, i)[0] == "queued" and _row(engine, i)[2] is None for i in ids[:2])
    assert store.leases.wait_until_none(0.1)
    assert claims[0] is not None and not store.store(claims[0], succeeded_outcome())
    # Once stopping, the worker starts no call: the third stays queued for another.
    outcome = run_extraction(
        store,
        ids[2],
        lambda _, __: succeeded_outcome(),
        lease_s=60,
        taxonomy_version=TAXONOMY,
        should_stop=lambda: True,
    )
    store.close()
    assert outcome == NOT_STARTED
    assert _row(engine, ids[2])[0] == "queued"


def test_a_call_is_extracted_with_the_language_it_was_submitted_with(engine: Engine) -> None:
    french, unknown = add_transcripts(engine, 2)
    key = french if engine.dialect.name == "postgresql" else french.hex
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE transcripts SET language = 'fr' WHERE id = :id"), {"id": key}
        )
    store = ExtractionStore(build_sessionmaker(engine))
    given: list[tuple[str, str | None]] = []

    def call(transcript: str, language: str | None) -> ExtractionOutcome:
        given.append((transcript, language))
        return succeeded_outcome()

    for transcript_id in (french, unknown):
        assert (
            run_extraction(store, transcript_id, call, lease_s=60, taxonomy_version=TAXONOMY)
            == "succeeded"
        )
    store.close()
    assert [language for _, language in given] == ["fr", None]
    assert given[0][0].startswith("Client: my router")
