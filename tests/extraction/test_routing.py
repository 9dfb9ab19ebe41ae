"""The review decision made when an extraction is stored (app/extraction/routing.py)."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest

from app.config import ReviewSettings, SettingsError
from app.db.models import Extraction
from app.extraction.routing import CAUSES, ReviewPolicy, explore_place, in_audit_sample
from schemas.taxonomy import load_taxonomy
from support.factories import succeeded_outcome

TAXONOMY = load_taxonomy()
CALL = "Client: mon Router ne marche plus."  # the transcript: it says the product's name


def outcome(confidence: float | None, calibrated: bool = True, reason: str = "breakdown") -> object:
    return replace(
        succeeded_outcome(), confidence=confidence, confidence_calibrated=calibrated, reason=reason
    )


def test_below_the_threshold_failed_and_uncalibrated_calls_need_review() -> None:
    policy = ReviewPolicy.from_settings(ReviewSettings(threshold=0.9, audit_rate=0), TAXONOMY)
    call = uuid.uuid4()
    assert policy.decide(call, outcome(0.95), CALL).cause is None
    assert policy.decide(call, outcome(0.9), CALL).cause is None  # at the threshold: accepted
    unsure = policy.decide(call, outcome(0.5), CALL)
    assert unsure.cause == "low_confidence" and unsure.priority == 0.5
    failed = policy.decide(call, replace(succeeded_outcome(), status="failed", reason=None), CALL)
    assert failed.cause == "failed" and failed.priority == -1.0
    # A raw score (a taxonomy the model was never measured on), however high: a person.
    raw = policy.decide(call, outcome(0.99, calibrated=False), CALL)
    assert raw.cause == "uncalibrated" and raw.priority == 0.99
    accepted = policy.decide(call, outcome(0.95), CALL)
    assert accepted.columns() == {
        "review_cause": None,
        "in_audit": False,
        "review_threshold": 0.9,
        "audit_rate": 0,
        "review_priority": None,
    }


def test_uncalibrated_threshold_applies_the_threshold_to_raw_and_missing_scores() -> None:
    settings = ReviewSettings(threshold=0.8, audit_rate=0, uncalibrated="threshold")
    policy = ReviewPolicy.from_settings(settings, TAXONOMY)
    call = uuid.uuid4()
    assert policy.decide(call, outcome(0.85, calibrated=False), CALL).cause is None
    assert policy.decide(call, outcome(0.7, calibrated=False), CALL).cause == "low_confidence"
    assert policy.decide(call, outcome(None, calibrated=False), CALL).cause == "low_confidence"
    # Threshold 0: a backend without confidences sends only its failures to people.
    anything = ReviewPolicy.from_settings(settings.model_copy(update={"threshold": 0}), TAXONOMY)
    assert anything.decide(call, outcome(None, calibrated=False), CALL).cause is None


def test_per_reason_thresholds_and_their_codes() -> None:
    settings = ReviewSettings(threshold=0.8, reason_thresholds={"other": 0.95}, audit_rate=0)
    policy = ReviewPolicy.from_settings(settings, TAXONOMY)
    call = uuid.uuid4()
    assert policy.decide(call, outcome(0.9, reason="billing"), CALL).cause is None
    decided = policy.decide(call, outcome(0.9, reason="other"), CALL)
    assert decided.cause == "low_confidence" and decided.threshold == 0.95
    wrong = ReviewSettings(reason_thresholds={"Facturation": 0.9})
    with pytest.raises(SettingsError, match="'Facturation' is not a reason code .* billing"):
        ReviewPolicy.from_settings(wrong, TAXONOMY)
    with pytest.raises(ValueError, match=r"not in \[0, 1\]"):
        ReviewSettings(reason_thresholds={"other": 1.5})


def test_the_audit_draw_is_stable_and_its_rate() -> None:
    ids = [uuid.UUID(int=n * 7919 + 1) for n in range(20_000)]
    drawn = [i for i in ids if in_audit_sample(i, 0.02)]
    assert 320 <= len(drawn) <= 480  # 400 expected; 99.9% bounds
    assert drawn == [i for i in ids if in_audit_sample(i, 0.02)]  # the same call, the same draw
    assert set(drawn) <= {i for i in ids if in_audit_sample(i, 0.1)}  # a higher rate keeps them
    assert not any(in_audit_sample(i, 0.0) for i in ids[:1000])
    assert all(in_audit_sample(i, 1.0) for i in ids[:1000])
    # Pinned: a change of the hash would move calls in and out of the sample of record.
    assert drawn[:3] == [uuid.UUID(int=0x4977B), uuid.UUID(int=0x9AAB1), uuid.UUID(int=0x15DEFC)]


def test_the_queue_order_audit_first_then_no_confidence_then_lowest() -> None:
    audit = ReviewPolicy.from_settings(ReviewSettings(threshold=0.9, audit_rate=1), TAXONOMY)
    plain = ReviewPolicy.from_settings(ReviewSettings(threshold=0.9, audit_rate=0), TAXONOMY)
    call = uuid.uuid4()
    sure_audit = audit.decide(call, outcome(0.99), CALL)
    assert sure_audit.cause is None and sure_audit.in_audit and sure_audit.priority == -2.0
    failed = plain.decide(call, replace(succeeded_outcome(), status="failed", reason=None), CALL)
    assert failed.priority == -1.0
    assert plain.decide(call, outcome(0.3), CALL).priority == 0.3


def test_sure_calls_drawn_for_exploration_go_to_people_spread_among_the_unsure() -> None:
    ids = [uuid.UUID(int=n * 7919 + 1) for n in range(20_000)]
    explore = ReviewPolicy.from_settings(
        ReviewSettings(threshold=0.9, audit_rate=0, explore_rate=0.1), TAXONOMY
    )
    decisions = [explore.decide(i, outcome(0.97), CALL) for i in ids]
    drawn = [d for d in decisions if d.cause == "explore"]
    assert 1_800 <= len(drawn) <= 2_200  # 2,000 expected; 99.9% bounds
    # Spread over the unsure calls' places (below the threshold), not ahead of them all.
    places = sorted(d.priority for d in drawn)  # type: ignore[type-var]
    assert 0 <= places[0] < 0.05 and 0.85 < places[-1] < 0.9
    assert 0.40 < places[len(places) // 2] < 0.50  # the median near half the threshold
    # A draw of its own, stable, and a higher rate keeps what a lower one drew.
    assert [d.cause for d in decisions] == [
        explore.decide(i, outcome(0.97), CALL).cause for i in ids
    ]
    more = {i for i in ids if explore_place(i, 0.3) is not None}
    assert {i for i, d in zip(ids, decisions, strict=True) if d.cause == "explore"} <= more
    audit = {i for i in ids if in_audit_sample(i, 0.1)}
    overlap = len(audit & more)  # independent draws: about 0.1 * 0.3 of the calls
    assert 400 <= overlap <= 800
    # Only calls that would have been accepted: the unsure, failed and audit ones keep theirs.
    call = next(i for i, d in zip(ids, decisions, strict=True) if d.cause == "explore")
    assert explore.decide(call, outcome(0.5), CALL).cause == "low_confidence"
    failed = explore.decide(call, replace(succeeded_outcome(), status="failed", reason=None), CALL)
    assert failed.cause == "failed"
    with_audit = ReviewPolicy.from_settings(
        ReviewSettings(threshold=0.9, audit_rate=1, explore_rate=1), TAXONOMY
    ).decide(call, outcome(0.97), CALL)
    assert (with_audit.cause, with_audit.in_audit, with_audit.priority) == (None, True, -2.0)
    # A reason's own threshold places the call below that threshold.
    per_reason = ReviewPolicy.from_settings(
        ReviewSettings(
            threshold=0.9, reason_thresholds={"other": 0.5}, explore_rate=1, audit_rate=0
        ),
        TAXONOMY,
    ).decide(call, outcome(0.97, reason="other"), CALL)
    assert per_reason.cause == "explore" and 0 <= per_reason.priority < 0.5  # type: ignore[operator]
    # Off by default.
    plain = ReviewPolicy.from_settings(ReviewSettings(audit_rate=0), TAXONOMY)
    assert plain.decide(call, outcome(0.97), CALL).cause is None
    with pytest.raises(ValueError, match="less than or equal to 1"):
        ReviewSettings(explore_rate=1.5)


def test_on_a_list_without_a_calibrated_confidence_the_draw_moves_the_surest_calls_forward() -> (
    None
):
    # Every call of such a list goes to people, ordered by its raw score: the ones it is surest
    # of would come last. Drawn, they keep their cause and wait among the others instead.
    explore = ReviewPolicy.from_settings(
        ReviewSettings(threshold=0.9, audit_rate=0, explore_rate=1), TAXONOMY
    )
    call = uuid.uuid4()
    place = explore_place(call, 1)
    assert place is not None
    sure = explore.decide(call, outcome(0.99, calibrated=False), CALL)
    assert sure.cause == "uncalibrated" and sure.priority == pytest.approx(place * 0.9)
    unsure = explore.decide(call, outcome(0.6, calibrated=False), CALL)
    assert unsure.cause == "uncalibrated" and unsure.priority == 0.6  # its own place
    without = explore.decide(call, outcome(None, calibrated=False), CALL)
    assert without.cause == "uncalibrated" and without.priority == -1.0


def test_a_product_the_call_never_says_goes_to_people_however_sure_the_reason() -> None:
    policy = ReviewPolicy.from_settings(ReviewSettings(threshold=0.9, audit_rate=0), TAXONOMY)
    call = uuid.uuid4()
    said = "Customer: my Samsung QE55 TV shows no picture since Monday."
    for product, cause in [
        ("Samsung QE55", None),  # its words are the call's, case and accents folded
        ("TV Samsung", None),
        (None, None),  # no product: nothing to check
        ("véto-viseur Samsung QE55", "product_not_said"),  # misread
        ("disposable virtual card", "product_not_said"),  # a product of another call
    ]:
        decided = policy.decide(call, replace(outcome(0.99), product=product), said)
        assert decided.cause == cause, product
    # In the queue by the product's confidence (its reason is sure: not behind every unsure
    # reason); without one, at the threshold.
    unsure_of_it = replace(outcome(0.97), product="virtual card", product_confidence=0.07)
    assert policy.decide(call, unsure_of_it, said).priority == 0.07
    unsaid = policy.decide(call, replace(outcome(0.97), product="virtual card"), said)
    assert unsaid.cause == "product_not_said" and unsaid.priority == 0.9
    # Below the threshold the cause stays the confidence's; with `accept`, the reason decides.
    low = policy.decide(call, replace(outcome(0.5), product="virtual card"), said)
    assert low.cause == "low_confidence"
    accept = ReviewPolicy.from_settings(
        ReviewSettings(threshold=0.9, audit_rate=0, product_not_said="accept"), TAXONOMY
    )
    assert accept.decide(call, replace(outcome(0.99), product="virtual card"), said).cause is None


def test_every_cause_fits_its_column() -> None:
    # SQLite would store a longer one; PostgreSQL would refuse the extraction.
    assert all(len(cause) <= Extraction.review_cause.type.length for cause in CAUSES)
