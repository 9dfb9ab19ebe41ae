"""The evaluation's scoring rules."""

from __future__ import annotations

import pytest

from app.evaluation.metrics import percentile, product_matches, reason_scores


@pytest.mark.parametrize(
    ("predicted", "expected", "match"),
    [
        (None, None, True),
        ("Livebox 6", None, False),
        (None, "Livebox 6", False),
        ("la box Livebox 6", "Livebox 6", True),  # containment
        ("LIVEBOX 6", "livebox 6", True),  # case
        ("lave-linge Bosch", "Lave linge BOSCH Série 6", True),  # punctuation, containment
        ("contrat électricité", "contrat electricite tarif bleu", True),  # accents
        ("forfait mobile 100 Go", "forfait 100 Go mobile", True),  # word overlap
        ("carte Visa Premier", "assurance habitation", False),
        ("box", "Freebox Pop", False),
    ],
)
def test_product_rule(predicted: str | None, expected: str | None, match: bool) -> None:
    assert product_matches(predicted, expected) is match


def test_reason_scores_accuracy_macro_f1_and_confusion() -> None:
    labels = ["a", "b", "c"]
    expected = ["a", "a", "b", "b", "c"]
    predicted = ["a", "b", "b", "b", None]  # a failed extraction counts as wrong
    accuracy, macro_f1, per_class, confusion = reason_scores(predicted, expected, labels)
    assert accuracy == pytest.approx(3 / 5)
    assert confusion == [[1, 1, 0], [0, 2, 0], [0, 0, 0]]
    assert per_class["a"].precision == 1.0 and per_class["a"].recall == 0.5
    assert per_class["b"].precision == pytest.approx(2 / 3) and per_class["b"].recall == 1.0
    assert per_class["c"].f1 == 0.0 and per_class["c"].support == 1
    f1_a, f1_b = 2 * 1 * 0.5 / 1.5, 2 * (2 / 3) * 1 / (2 / 3 + 1)
    assert macro_f1 == pytest.approx((f1_a + f1_b + 0.0) / 3)


def test_percentile_interpolates() -> None:
    assert percentile([10, 20, 30, 40], 0.5) == 25
    assert percentile([5], 0.95) == 5
    assert percentile([], 0.5) == 0.0
