"""Production accuracy: the model's answers against people's labels.

The audit sample (a random share of all calls, drawn whatever the model's confidence) gives an
unbiased figure; the calls people reviewed because the model was unsure are reported apart, as
the biased figure they are."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.orm import Session

from app.db import labels as labels_db
from app.db.labels import JudgedAnswer, QualityFilter
from app.extraction import routing
from app.results.service import check_range
from app.scoring import product_matches, wilson_interval
from schemas.review import AutoAccepted, ModelQuality, Proportion, QualityFigures, QualityReport


def proportion(right: int, n: int) -> Proportion:
    low, high = wilson_interval(right, n)
    return Proportion(
        n=n,
        right=right,
        accuracy=None if n == 0 else round(right / n, 4),
        ci95=(round(low, 4), round(high, 4)),
    )


def _reason_right(answer: JudgedAnswer) -> bool:
    return answer.status == "succeeded" and answer.reason == answer.label_reason


def _product_right(answer: JudgedAnswer) -> bool:
    return answer.status == "succeeded" and product_matches(answer.product, answer.label_product)


def figures(answers: Iterable[JudgedAnswer]) -> QualityFigures:
    """Reason and product accuracy of the model on these labelled calls (a failed extraction
    counts as wrong), and per reason the person chose."""
    answers = list(answers)
    by_reason: dict[str, list[JudgedAnswer]] = {}
    for answer in answers:
        by_reason.setdefault(answer.label_reason, []).append(answer)
    return QualityFigures(
        reason=proportion(sum(map(_reason_right, answers)), len(answers)),
        product=proportion(sum(map(_product_right, answers)), len(answers)),
        by_reason={
            code: proportion(sum(map(_reason_right, group)), len(group))
            for code, group in sorted(by_reason.items())
        },
    )


def quality_report(session: Session, filters: QualityFilter) -> QualityReport:
    """The model's production accuracy in the filter (calls by when they happened)."""
    check_range(filters.since, filters.until)
    judged = list(labels_db.judged_answers(session, filters))
    audit = [a for a in judged if a.in_audit]
    groups: dict[tuple[str, str], list[JudgedAnswer]] = {}
    for answer in audit:
        groups.setdefault((answer.model, answer.taxonomy_version), []).append(answer)
    counts = labels_db.decision_counts(session, filters)
    accepted_audit = [a for a in audit if a.review_cause is None]
    return QualityReport(
        audit_calls=counts["audit"],
        audit_reviewed=len(audit),
        audit=figures(audit),
        by_model=[
            ModelQuality(model=model, taxonomy_version=taxonomy, **dict(figures(group)))
            for (model, taxonomy), group in sorted(groups.items())
        ],
        auto_accepted=AutoAccepted(
            calls=counts["calls"],
            accepted=counts["accepted"],
            explored=counts["explored"],
            share=None if not counts["calls"] else round(counts["accepted"] / counts["calls"], 4),
            accuracy=proportion(sum(map(_reason_right, accepted_audit)), len(accepted_audit)),
        ),
        low_confidence_reviewed=figures(
            a for a in judged if not a.in_audit and a.review_cause in routing.UNSURE_CAUSES
        ),
    )


def audit_reason_accuracy(session: Session, filters: QualityFilter) -> Proportion:
    """The model's reason accuracy on the reviewed audit sample (the overview's figure, the
    same as /v1/quality's `audit.reason`), counted by the database: one row back, however
    many calls people reviewed."""
    check_range(filters.since, filters.until)
    right, n = labels_db.audit_reason_counts(session, filters)
    return proportion(right, n)
