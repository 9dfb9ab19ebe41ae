"""Two configurations scored on the same records: which records only one of them got right,
and whether the difference in reason accuracy is more than chance (exact McNemar)."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

from app.evaluation.metrics import mcnemar_exact_p
from app.evaluation.runner import BackendResult

SIGNIFICANCE = 0.05


@dataclass(frozen=True)
class PairedComparison:
    reference: str
    other: str
    n: int
    both_right: int
    only_reference_right: int
    only_other_right: int
    both_wrong: int
    p_value: float

    @property
    def significant(self) -> bool:
        return self.p_value < SIGNIFICANCE


def compare(reference: BackendResult, other: BackendResult) -> PairedComparison:
    """Reason answers of two results over the same records, record by record."""
    ids = [p.id for p in reference.predictions]
    if ids != [p.id for p in other.predictions]:
        raise ValueError(f"{reference.label} and {other.label} were not run on the same records")
    counts = {(True, True): 0, (True, False): 0, (False, True): 0, (False, False): 0}
    for a, b in zip(reference.predictions, other.predictions, strict=True):
        counts[(a.reason_right, b.reason_right)] += 1
    only_reference, only_other = counts[(True, False)], counts[(False, True)]
    return PairedComparison(
        reference=reference.label,
        other=other.label,
        n=len(ids),
        both_right=counts[(True, True)],
        only_reference_right=only_reference,
        only_other_right=only_other,
        both_wrong=counts[(False, False)],
        p_value=mcnemar_exact_p(only_reference, only_other),
    )


def compare_all(results: list[BackendResult]) -> list[PairedComparison]:
    """Every pair, in the order the configurations were given."""
    return [compare(a, b) for a, b in combinations(results, 2)]
