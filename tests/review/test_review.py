"""The review loop through the API: the queue, labels (history, stale writes, bad input), the
answer that counts in every read, and production quality against counts made by hand. On
PostgreSQL and SQLite, with calls extracted by the worker's code."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from app.config import Settings
from app.db.session import build_engine, build_sessionmaker, session_scope
from app.errors import ConflictError
from app.extraction.routing import explore_place
from app.review import service as review
from app.scoring import wilson_interval
from schemas.review import LabelWrite
from schemas.taxonomy import load_taxonomy
from support.env import callx_command, process_env

Store = Callable[..., list[str]]  # the store_calls fixture


def call(reason: str, confidence: float | None, extra: str = "") -> str:
    score = "" if confidence is None else f" [confidence={confidence}]"
    return f"Client: ma Livebox 6 {extra}[reason={reason}]{score}"


def queue_ids(client: TestClient, **params: Any) -> list[str]:
    response = client.get("/v1/review", params=params)
    assert response.status_code == 200, response.text
    return [item["transcript_id"] for item in response.json()["items"]]


def label(client: TestClient, transcript_id: str, **body: Any) -> Any:
    return client.put(f"/v1/transcripts/{transcript_id}/label", json=body)


def test_the_queue_holds_failed_unsure_and_uncalibrated_calls_lowest_first(
    client: TestClient, store_calls: Store
) -> None:
    ids = store_calls(
        [
            call("billing", 0.95),  # 0: auto-accepted
            call("breakdown", 0.5),  # 1: below 0.9
            call("delivery", 0.99),  # 2: auto-accepted
            call("billing", 0.7),  # 3: below 0.9
            call("billing", None, "[invalid] "),  # 4: failed
            call("billing", None),  # 5: no confidence: uncalibrated
            {"text": call("delivery", 0.8), "source": "web"},  # 6: below, another source
        ]
    )
    # Failed and without a confidence first (ties in id order), then the lowest confidence.
    queued = queue_ids(client)
    assert set(queued[:2]) == {ids[4], ids[5]} and queued[2:] == [ids[1], ids[3], ids[6]]
    items = client.get("/v1/review").json()["items"]
    assert sorted(i["extraction"]["review"]["cause"] for i in items[:2]) == [
        "failed",
        "uncalibrated",
    ]
    assert [i["extraction"]["review"]["cause"] for i in items[2:]] == [
        "low_confidence",
        "low_confidence",
        "low_confidence",
    ]
    assert items[2]["text"].startswith("Client: ma Livebox 6") and items[2]["label_version"] == 0
    # Filters: the source, the model's reason, the time of the call.
    assert queue_ids(client, source="web") == [ids[6]]
    assert queue_ids(client, reason="billing") == [ids[5], ids[3]]
    assert queue_ids(client, since="2100-01-01T00:00:00Z") == []
    # Pages of one, each after the previous one's cursor, give the same order.
    seen, cursor = [], None
    while True:
        page = client.get(
            "/v1/review", params={"limit": 1, **({"cursor": cursor} if cursor else {})}
        )
        seen += [i["transcript_id"] for i in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == queue_ids(client)
    assert client.get("/v1/review", params={"cursor": "nope"}).status_code == 422
    # The decision is stored with each extraction: an accepted call says so.
    accepted = client.get(f"/v1/transcripts/{ids[0]}").json()["extraction"]["review"]
    assert accepted == {
        "cause": None,
        "in_audit": False,
        "threshold": 0.9,
        "audit_rate": 0.0,
        "waiting": False,
    }


def test_a_decision_is_kept_when_the_settings_change_and_per_reason_thresholds_apply(
    client: TestClient, store_calls: Store
) -> None:
    first = store_calls([call("billing", 0.85)])  # below 0.9: queued
    # Later, a lower threshold, and a stricter one for `other`: the first call's decision stays.
    later = store_calls(
        [call("billing", 0.85), call("other", 0.85)],
        review={"threshold": 0.8, "reason_thresholds": {"other": 0.95}},
    )
    assert sorted(queue_ids(client)) == sorted([first[0], later[1]])
    kept = client.get(f"/v1/transcripts/{first[0]}").json()["extraction"]["review"]
    assert kept["threshold"] == 0.9 and kept["cause"] == "low_confidence"
    other = client.get(f"/v1/transcripts/{later[1]}").json()["extraction"]["review"]
    assert other["threshold"] == 0.95


def test_a_label_becomes_the_answer_everywhere_with_its_history(
    client: TestClient, store_calls: Store, review_settings: Settings
) -> None:
    ids = store_calls([call("breakdown", 0.6), call("billing", 0.97)])
    unsure = ids[0]
    first = label(client, unsure, reason="usage_help", product="Livebox 6", note="asks how")
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["version"] == 1 and body["labelled_by"] == "local" and body["current"]
    assert body["replaces"]["reason"] == "breakdown" and body["replaces"]["confidence"] == 0.6
    # The call leaves the queue; every read shows the model's answer, the label, the answer.
    assert queue_ids(client) == []
    read = client.get(f"/v1/transcripts/{unsure}").json()
    assert read["extraction"]["reason"] == "breakdown"
    assert read["label"]["reason"] == "usage_help"
    assert read["answer"] == {"reason": "usage_help", "product": "Livebox 6", "by": "label"}
    assert read["extraction"]["review"]["waiting"] is False
    listed = {i["transcript_id"]: i for i in client.get("/v1/extractions").json()["items"]}
    assert listed[unsure]["answer"]["by"] == "label" and listed[unsure]["label"]["version"] == 1
    assert listed[ids[1]]["answer"] == {"reason": "billing", "product": "Livebox", "by": "model"}
    assert listed[ids[1]]["label"] is None
    # Filters and analytics count the answer.
    by_reason = client.get("/v1/extractions", params={"reason": "usage_help"}).json()["items"]
    assert [i["transcript_id"] for i in by_reason] == [unsure]
    counts = {i["reason"]: i["count"] for i in client.get("/v1/analytics/reasons").json()["items"]}
    assert counts == {"usage_help": 1, "billing": 1}
    # And the view analysts query.
    engine = create_engine(review_settings.database_url)
    with engine.connect() as connection:
        row = connection.execute(
            text(
                "SELECT reason, label_reason, answer_reason, answer_by, labelled_by, "
                "label_version, review_cause FROM call_extractions WHERE transcript_id = :id"
            ),
            {
                "id": uuid.UUID(unsure)
                if engine.dialect.name == "postgresql"
                else uuid.UUID(unsure).hex
            },
        ).one()
    engine.dispose()
    assert tuple(row) == (
        "breakdown",
        "usage_help",
        "usage_help",
        "label",
        "local",
        1,
        "low_confidence",
    )

    # A stale write (version 0: the reviewer did not see label 1) is a 409 that says why.
    stale = label(client, unsure, reason="other")
    assert stale.status_code == 409
    assert "has label version 1" in stale.json()["detail"]
    # A correction of version 1: version 2, and the history keeps both.
    second = label(client, unsure, reason="other", product=None, version=1)
    assert second.status_code == 200 and second.json()["version"] == 2
    history = client.get(f"/v1/transcripts/{unsure}/labels").json()["items"]
    assert [(h["version"], h["reason"], h["current"]) for h in history] == [
        (1, "usage_help", False),
        (2, "other", True),
    ]
    counts = {i["reason"]: i["count"] for i in client.get("/v1/analytics/reasons").json()["items"]}
    assert counts == {"other": 1, "billing": 1}


def test_bad_labels_are_refused_with_what_to_send(client: TestClient, store_calls: Store) -> None:
    ids = store_calls([call("billing", 0.5)])
    wrong = label(client, ids[0], reason="Facturation")
    assert wrong.status_code == 422
    assert "use one of: breakdown, usage_help" in wrong.json()["detail"]
    assert wrong.json()["errors"][0]["loc"] == ["body", "reason"]
    assert label(client, ids[0], reason="billing", colour="red").status_code == 422
    assert label(client, ids[0], reason="billing", version=-1).status_code == 422
    assert label(client, ids[0], reason="billing", product="x" * 201).status_code == 422
    missing = label(client, str(uuid.uuid4()), reason="billing")
    assert missing.status_code == 404
    assert client.get(f"/v1/transcripts/{uuid.uuid4()}/labels").status_code == 404
    # A call not extracted yet has no model answer to correct.
    queued = client.post("/v1/transcripts", json={"text": "Client: bonjour"}).json()["id"]
    not_yet = label(client, queued, reason="billing")
    assert not_yet.status_code == 409 and "queued" in not_yet.json()["detail"]
    # Nothing was written by the refusals.
    assert client.get(f"/v1/transcripts/{ids[0]}/labels").json()["items"] == []
    assert client.get(f"/v1/transcripts/{ids[0]}").json()["answer"]["by"] == "model"


def test_concurrent_labels_of_one_call_one_wins_the_others_are_409(
    store_calls: Store, review_settings: Settings
) -> None:
    ids = store_calls([call("billing", 0.5)])
    engine = build_engine(review_settings)
    sessions = build_sessionmaker(engine)
    taxonomy = load_taxonomy(None)
    start = threading.Barrier(6)
    outcomes: list[str] = []

    def write(n: int) -> None:
        start.wait()
        try:
            with session_scope(sessions) as session:
                review.write_label(
                    session,
                    uuid.UUID(ids[0]),
                    LabelWrite(reason=("delivery", "other")[n % 2], version=0),
                    review.Reviewer(f"reviewer-{n}"),
                    taxonomy,
                )
            outcomes.append("stored")
        except ConflictError:
            outcomes.append("conflict")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["conflict"] * 5 + ["stored"]
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT version, is_current FROM labels")).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [(1, True)]


def _proportion(right: int, n: int) -> dict[str, Any]:
    low, high = wilson_interval(right, n)
    return {
        "n": n,
        "right": right,
        "accuracy": round(right / n, 4),
        "ci95": [round(low, 4), round(high, 4)],
    }


def test_quality_equals_counts_made_by_hand(client: TestClient, store_calls: Store) -> None:
    # Model A, all in the audit sample: 6 confident (4 of them right), 2 unsure (1 right).
    audit_a = store_calls(
        [call("billing", 0.97)] * 4 + [call("delivery", 0.95)] * 2 + [call("breakdown", 0.5)] * 2,
        review={"audit_rate": 1.0},
    )
    # Model B, audit sample: 3 confident calls, all right.
    audit_b = store_calls([call("billing", 0.99)] * 3, review={"audit_rate": 1.0}, model="fake-b")
    # Not in the audit sample: 2 unsure calls reviewed (0 right), 3 accepted and never reviewed.
    unsure = store_calls([call("other", 0.4)] * 2)
    store_calls([call("billing", 0.98)] * 3)
    for i in audit_a[:4]:  # right
        assert label(client, i, reason="billing", product="Livebox 6").status_code == 200
    for i in audit_a[4:6]:  # wrong reason (the model said delivery), right product
        assert label(client, i, reason="billing", product="Livebox 6").status_code == 200
    assert label(client, audit_a[6], reason="breakdown", product="Livebox 6").status_code == 200
    assert label(client, audit_a[7], reason="usage_help", product=None).status_code == 200
    for i in audit_b:
        assert label(client, i, reason="billing", product="Livebox 6").status_code == 200
    for i in unsure:
        assert label(client, i, reason="cancellation", product="Livebox 6").status_code == 200

    report = client.get("/v1/quality").json()
    assert report["audit_calls"] == 11 and report["audit_reviewed"] == 11
    # Audit: 4 + 0 + 1 (A) + 3 (B) = 8 of 11 reasons right; products: all but audit_a[7].
    assert report["audit"]["reason"] == _proportion(8, 11)
    assert report["audit"]["product"] == _proportion(10, 11)
    assert report["audit"]["by_reason"] == {
        "billing": _proportion(7, 9),
        "breakdown": _proportion(1, 1),
        "usage_help": {**_proportion(0, 1), "accuracy": 0.0},
    }
    by_model = {m["model"]: m for m in report["by_model"]}
    assert by_model["fake-a"]["reason"] == _proportion(5, 8)
    assert by_model["fake-b"]["reason"] == _proportion(3, 3)
    # Decided calls: 8 + 3 + 2 + 3 = 16; accepted: 6 (A) + 3 (B) + 3 = 12.
    assert report["auto_accepted"]["calls"] == 16 and report["auto_accepted"]["accepted"] == 12
    assert report["auto_accepted"]["share"] == 0.75
    # The auto-accepted audit calls: A's 6 (4 right) and B's 3: 7 of 9.
    assert report["auto_accepted"]["accuracy"] == _proportion(7, 9)
    # Biased, apart: the 2 unsure calls outside the audit sample, both wrong.
    assert report["low_confidence_reviewed"]["reason"]["n"] == 2
    assert report["low_confidence_reviewed"]["reason"]["right"] == 0
    # Filters: one model; a time range with no call.
    only_b = client.get("/v1/quality", params={"model": "fake-b"}).json()
    assert only_b["audit"]["reason"] == _proportion(3, 3) and only_b["audit_calls"] == 3
    future = client.get("/v1/quality", params={"since": "2100-01-01T00:00:00Z"}).json()
    assert future["audit_reviewed"] == 0 and future["audit"]["reason"]["accuracy"] is None
    bad = client.get(
        "/v1/quality", params={"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}
    )
    assert bad.status_code == 422


def test_the_audit_sample_is_its_rate_of_all_calls_whatever_their_confidence(
    store_calls: Store, review_settings: Settings
) -> None:
    n, rate = 2000, 0.05
    confidences = [round(0.3 + 0.7 * (i % 100) / 100, 2) for i in range(n)]
    store_calls([call("billing", c, f"{i} ") for i, c in enumerate(confidences)],
                review={"audit_rate": rate, "threshold": 0.65})  # fmt: skip
    engine = create_engine(review_settings.database_url)
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT in_audit, confidence, review_cause FROM extractions WHERE is_current")
        ).all()
    engine.dispose()
    assert len(rows) == n

    def within_bounds(drawn: int, calls: int) -> bool:
        # 99.9% two-sided binomial bounds (normal approximation, z = 3.29).
        spread = 3.29 * (calls * rate * (1 - rate)) ** 0.5
        return abs(drawn - calls * rate) <= spread

    assert within_bounds(sum(r.in_audit for r in rows), n)
    # Drawn independently of the confidence: as often among unsure calls as among sure ones.
    unsure = [r for r in rows if r.review_cause == "low_confidence"]
    sure = [r for r in rows if r.review_cause is None]
    assert len(unsure) > 500 and len(sure) > 500
    assert within_bounds(sum(r.in_audit for r in unsure), len(unsure))
    assert within_bounds(sum(r.in_audit for r in sure), len(sure))


def test_sure_calls_drawn_for_exploration_wait_among_the_unsure_and_are_trained_on(
    client: TestClient, store_calls: Store, review_settings: Settings, tmp_path: Path
) -> None:
    # Half the sure calls drawn: they wait for people with the unsure ones, spread among them.
    ids = store_calls(
        [call("billing", 0.98, f"{i} ") for i in range(40)]
        + [call("breakdown", round(0.1 + 0.02 * i, 2), f"u{i} ") for i in range(40)],
        review={"explore_rate": 0.5},
    )
    sure, unsure = ids[:40], ids[40:]
    explored = [i for i in sure if explore_place(uuid.UUID(i), 0.5) is not None]
    assert explored, "no call of 40 drawn at 0.5"
    items = client.get("/v1/review", params={"limit": 500}).json()["items"]
    causes = {i["transcript_id"]: i["extraction"]["review"]["cause"] for i in items}
    assert set(causes) == set(explored) | set(unsure)
    assert all(causes[i] == "explore" for i in explored)
    assert all(causes[i] == "low_confidence" for i in unsure)
    # In the queue by value: each explored call at its drawn place below the threshold (0.9),
    # among the unsure calls' confidences (0.1 to 0.88).
    place = {i: explore_place(uuid.UUID(i), 0.5) * 0.9 for i in explored}  # type: ignore[operator]
    place |= {i: round(0.1 + 0.02 * n, 2) for n, i in enumerate(unsure)}
    assert [i["transcript_id"] for i in items] == sorted(place, key=lambda i: (place[i], i))
    # Accepted on the model's confidence (the share does not move), counted apart; not in the
    # biased figure of the unsure calls.
    for transcript_id in explored + unsure[:3]:
        assert label(client, transcript_id, reason="billing", product=None).status_code == 200
    report = client.get("/v1/quality").json()
    assert report["auto_accepted"]["calls"] == 80
    assert report["auto_accepted"]["accepted"] == 40 and report["auto_accepted"]["share"] == 0.5
    assert report["auto_accepted"]["explored"] == len(explored)
    assert report["low_confidence_reviewed"]["reason"]["n"] == 3
    # Exported as training data (train, dev or test by the call's id), never as the audit.
    out = tmp_path / "labels"
    exported = callx_command(
        ("labels", "export", "--output", str(out)), process_env(review_settings), timeout=120
    )
    assert exported.returncode == 0, exported.stderr
    rows = {
        json.loads(line)["id"]: (split, json.loads(line))
        for split in ("train", "dev", "test", "audit")
        for line in (out / f"{split}.jsonl").read_text("utf-8").splitlines()
    }
    assert set(rows) == set(explored) | set(unsure[:3])
    for transcript_id in explored:
        split, row = rows[transcript_id]
        assert split != "audit" and row["provenance"]["review_cause"] == "explore"


def test_labels_before_any_review_decision_are_not_counted_as_audited(
    client: TestClient, store_calls: Store, review_settings: Settings
) -> None:
    """Extractions stored before callx decided (review_threshold NULL, as after the migration)
    are in neither the queue nor the quality figures, but can be labelled."""
    ids = store_calls([call("billing", 0.5)])
    engine = create_engine(review_settings.database_url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE extractions SET review_threshold = NULL, audit_rate = NULL, "
                "review_cause = NULL, review_priority = NULL"
            )
        )
    engine.dispose()
    assert queue_ids(client) == []
    assert client.get(f"/v1/transcripts/{ids[0]}").json()["extraction"]["review"] is None
    assert label(client, ids[0], reason="billing").status_code == 200
    report = client.get("/v1/quality").json()
    assert (
        report["auto_accepted"]["calls"] == 0
        and report["low_confidence_reviewed"]["reason"]["n"] == 0
    )


def test_a_re_extraction_keeps_the_label_as_the_answer_within_its_taxonomy(
    client: TestClient, store_calls: Store, review_settings: Settings
) -> None:
    from app.llm.fake import FakeBackend
    from support.factories import extract_stored

    ids = store_calls([call("breakdown", 0.5), call("billing", 0.5)])
    assert label(client, ids[0], reason="other", product=None).status_code == 200
    assert label(client, ids[1], reason="delivery", product="Colis").status_code == 200
    engine = create_engine(review_settings.database_url)
    with engine.begin() as connection:
        # Queued again; as calls queued before callx recorded their taxonomy, for any worker.
        connection.execute(
            text("UPDATE transcripts SET status = 'queued', taxonomy_version = NULL")
        )
    engine.dispose()
    # The first again with the same taxonomy, the second with another one.
    backend = FakeBackend(scored=True, model="fake-a")
    assert extract_stored(review_settings, [ids[0]], backend=backend) == ["succeeded"]
    assert extract_stored(
        review_settings, [ids[1]], backend=backend, taxonomy_version="other-1"
    ) == ["succeeded"]
    same = client.get(f"/v1/transcripts/{ids[0]}").json()
    assert same["answer"] == {"reason": "other", "product": None, "by": "label"}
    assert same["extraction"]["reason"] == "breakdown"  # the new attempt, the model's answer
    assert same["extraction"]["review"]["waiting"] is False  # labelled: not queued again
    # A label's code means nothing in another taxonomy: the model's answer counts there.
    other = client.get(f"/v1/transcripts/{ids[1]}").json()
    assert other["answer"]["by"] == "model" and other["answer"]["reason"] == "billing"
    counts = {i["reason"]: i["count"] for i in client.get("/v1/analytics/reasons").json()["items"]}
    assert counts == {"other": 1, "billing": 1}
    assert queue_ids(client) == []  # the other taxonomy's call is not this API's to label


def test_labels_racing_re_extractions_leave_the_label_as_the_answer(
    client: TestClient, store_calls: Store, review_settings: Settings
) -> None:
    """A label and a worker storing a new extraction of the same call, started together (the
    interleavings are the scheduler's; the next test pins the lock that orders them): the
    label is the call's answer and the rollups stay exact."""
    from app.db.rollups import rebuild_rollups
    from app.llm.fake import FakeBackend
    from support.factories import extract_stored

    ids = store_calls([call("breakdown", 0.5, f"{i} ") for i in range(8)])
    engine = build_engine(review_settings)
    with engine.begin() as connection:
        connection.execute(text("UPDATE transcripts SET status = 'queued'"))
    sessions = build_sessionmaker(engine)
    taxonomy = load_taxonomy(None)
    for transcript_id in ids:
        start = threading.Barrier(2)

        def write_label(transcript_id: str = transcript_id, start: Any = start) -> None:
            start.wait()
            with session_scope(sessions) as session:
                review.write_label(
                    session, uuid.UUID(transcript_id), LabelWrite(reason="other"),
                    review.Reviewer("r"), taxonomy,
                )  # fmt: skip

        def re_extract(transcript_id: str = transcript_id, start: Any = start) -> None:
            start.wait()
            backend = FakeBackend(scored=True, model="fake-b")
            assert extract_stored(review_settings, [transcript_id], backend=backend) == [
                "succeeded"
            ]

        threads = [threading.Thread(target=write_label), threading.Thread(target=re_extract)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    with engine.connect() as connection:
        answers = connection.execute(
            text("SELECT answer_reason, answer_by, model FROM extractions WHERE is_current")
        ).all()
        kept = connection.execute(
            text("SELECT day, reason, calls FROM reason_day_counts WHERE calls <> 0 ORDER BY 1, 2")
        ).all()
    assert {(r.answer_reason, r.answer_by, r.model) for r in answers} == {
        ("other", "label", "fake-b")
    }
    with session_scope(sessions) as session:
        rebuild_rollups(session)
    with engine.connect() as connection:
        rebuilt = connection.execute(
            text("SELECT day, reason, calls FROM reason_day_counts WHERE calls <> 0 ORDER BY 1, 2")
        ).all()
    engine.dispose()
    assert kept == rebuilt


@pytest.mark.parametrize("review_settings", ["postgresql"], indirect=True)
def test_a_label_waits_for_a_worker_holding_the_call(
    store_calls: Store, review_settings: Settings
) -> None:
    """On PostgreSQL a worker storing a result holds the transcript's row until it commits
    (finish_transcripts updates it); a label locks the same row first, so it waits and then
    sees the worker's new extraction, instead of correcting the one it replaces."""
    ids = store_calls([call("breakdown", 0.5)])
    engine = build_engine(review_settings)
    sessions = build_sessionmaker(engine)
    done = threading.Event()

    def write() -> None:
        with session_scope(sessions) as session:
            review.write_label(
                session, uuid.UUID(ids[0]), LabelWrite(reason="other"),
                review.Reviewer("r"), load_taxonomy(None),
            )  # fmt: skip
        done.set()

    with engine.connect() as worker:
        transaction = worker.begin()
        worker.execute(
            text("UPDATE transcripts SET updated_at = now() WHERE id = :id"), {"id": ids[0]}
        )
        labeller = threading.Thread(target=write)
        labeller.start()
        assert not done.wait(1.0)  # blocked on the worker's row lock
        transaction.commit()
    labeller.join(10)
    assert done.is_set()
    engine.dispose()
