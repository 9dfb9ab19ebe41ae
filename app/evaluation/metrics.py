"""Scores: reason accuracy, macro-F1, per-class precision/recall, confusion, product match;
how far an accuracy can be trusted (Wilson interval) and whether two differ (exact McNemar)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from app.scoring import (
    PRODUCT_RULE,
    product_in_call,
    product_matches,
    wilson_interval,
)

__all__ = ["PRODUCT_RULE", "product_in_call", "product_matches", "wilson_interval"]


CALIBRATION_RULE = (
    "expected calibration error: the calls split into 10 equal-width confidence bins, the mean "
    "over bins of |accuracy - mean confidence| weighted by the bin's share of the calls; "
    "accuracy at a coverage: of the given share of the calls with the highest confidence"
)
COVERAGES = (0.9, 0.8, 0.7)


def calibration_error(confidences: Sequence[float], right: Sequence[bool], bins: int = 10) -> float:
    """Expected calibration error (CALIBRATION_RULE); 0.0 for no calls."""
    if not confidences:
        return 0.0
    totals = [[0, 0.0, 0] for _ in range(bins)]  # calls, sum of confidences, right
    for confidence, ok in zip(confidences, right, strict=True):
        cell = totals[min(int(confidence * bins), bins - 1)]
        cell[0] += 1
        cell[1] += confidence
        cell[2] += int(ok)
    n = len(confidences)
    return sum(abs(r / c - s / c) * c / n for c, s, r in totals if c)


def accuracy_at_coverage(
    confidences: Sequence[float], right: Sequence[bool], coverage: float
) -> float | None:
    """Accuracy of the `coverage` share of the calls with the highest confidence (ties in
    input order); None for no calls."""
    kept = round(len(confidences) * coverage)
    if kept == 0:
        return None
    order = sorted(range(len(confidences)), key=lambda i: -confidences[i])[:kept]
    return sum(bool(right[i]) for i in order) / kept


@dataclass(frozen=True)
class ClassScore:
    precision: float
    recall: float
    f1: float
    support: int


def reason_scores(
    predicted: Sequence[str | None], expected: Sequence[str], labels: Sequence[str]
) -> tuple[float, float, dict[str, ClassScore], list[list[int]]]:
    """Accuracy, macro-F1 (over labels present in the gold data), per class, confusion[gold][pred].

    A failed extraction (None) counts as wrong for its gold class.
    """
    index = {label: i for i, label in enumerate(labels)}
    confusion = [[0] * len(labels) for _ in labels]
    for p, e in zip(predicted, expected, strict=True):
        if p in index:
            confusion[index[e]][index[p]] += 1
    correct = sum(p == e for p, e in zip(predicted, expected, strict=True))
    accuracy = correct / len(expected) if expected else 0.0
    gold = Counter(expected)
    per_class: dict[str, ClassScore] = {}
    for label in labels:
        i = index[label]
        tp = confusion[i][i]
        predicted_count = sum(row[i] for row in confusion)
        precision = tp / predicted_count if predicted_count else 0.0
        recall = tp / gold[label] if gold[label] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = ClassScore(precision, recall, f1, gold[label])
    present = [s.f1 for label, s in per_class.items() if gold[label]]
    macro_f1 = sum(present) / len(present) if present else 0.0
    return accuracy, macro_f1, per_class, confusion


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def mcnemar_exact_p(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar test: the chance of a split at least this uneven of the records
    that exactly one of two classifiers got right, if both were equally good (binomial, 1/2).

    Exact integer arithmetic: 2**-n would underflow a float beyond ~1,000 discordant records.
    """
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1))
    return min(1.0, 2 * tail / 2**n)
