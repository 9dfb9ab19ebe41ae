"""The evaluation's scoring rules."""

from __future__ import annotations

import pytest

from app.evaluation.metrics import (
    mcnemar_exact_p,
    percentile,
    product_matches,
    reason_scores,
    wilson_interval,
)


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


def test_wilson_interval() -> None:
    # 0 of 10: [0, z^2/n / (1 + z^2/n)]; never outside [0, 1], symmetric at the other end.
    assert wilson_interval(0, 10) == (0.0, pytest.approx(0.27754, abs=1e-5))
    assert wilson_interval(10, 10) == (pytest.approx(0.72246, abs=1e-5), 1.0)
    # The whole BANKING77 test set at 94.1% (scipy's binomtest(...).proportion_ci("wilson")
    # gives 0.932020-0.948700): the 95% target lies outside it.
    low, high = wilson_interval(2898, 3080)
    assert low == pytest.approx(0.932020, abs=1e-5) and high == pytest.approx(0.948700, abs=1e-5)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    # Every record right: the upper bound is 1 exactly, not 1 minus a rounding error.
    assert all(
        wilson_interval(n, n)[1] == 1.0 and wilson_interval(0, n)[0] == 0.0 for n in range(1, 200)
    )


@pytest.mark.parametrize(
    ("only_a", "only_b", "p"),
    [
        (0, 0, 1.0),
        (1, 1, 1.0),
        (0, 6, 0.03125),  # 2 * (1/2)^6
        (3, 7, 0.34375),  # 2 * (1 + 10 + 45 + 120) / 1024
        (7, 3, 0.34375),
        (40, 49, 0.396570158),  # scipy.stats.binomtest(40, 89).pvalue
        (1000, 1100, 0.030720708),  # 2**-2100 would underflow a float
    ],
)
def test_mcnemar_exact_p(only_a: int, only_b: int, p: float) -> None:
    assert mcnemar_exact_p(only_a, only_b) == pytest.approx(p, rel=1e-7)
