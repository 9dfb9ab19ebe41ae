"""Fitting the temperature of a model's confidence on evaluated dev sets (`callx calibrate`),
and recording it, with the figures it was measured by, in the adapter's card.

Each taxonomy version's temperature is the one that gives its evaluated calls the highest
likelihood (the mean log loss of "right" under the scaled confidence), searched on a fine grid:
one number, fitted on a few hundred calls, cannot overfit much, and the order of the calls is
kept, so the accuracy at a coverage does not change. A taxonomy's temperature applies to its
calls only; refitting one taxonomy keeps the others' temperatures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.evaluation.metrics import COVERAGES, accuracy_at_coverage, calibration_error
from app.evaluation.report import load_results
from app.evaluation.runner import BackendResult
from app.llm.calibration import (
    EPS,
    Calibration,
    card_calibration,
    scaled,
    taxonomies_summary,
)

METHOD = "temperature on the confidence's log-odds: sigmoid(logit(p) / T), fitted by log loss"
# 0.05 to 20, in steps of 1%: finer than a few hundred calls can tell apart.
GRID = tuple(math.exp(math.log(0.05) + i * 0.01) for i in range(int(math.log(400) / 0.01) + 1))


def log_loss(confidences: Sequence[float], right: Sequence[bool], temperature: float) -> float:
    total = 0.0
    for confidence, ok in zip(confidences, right, strict=True):
        p = min(max(scaled(confidence, temperature), EPS), 1.0 - EPS)
        total -= math.log(p if ok else 1.0 - p)
    return total / max(1, len(confidences))


def fit_temperature(confidences: Sequence[float], right: Sequence[bool]) -> float:
    """The temperature of least log loss; raises ValueError when the calls cannot fit one (none,
    or all right or all wrong: any temperature would be pushed to an end of the grid)."""
    if not confidences:
        raise ValueError("no call with a confidence to fit a temperature on")
    if all(right) or not any(right):
        raise ValueError("the calls are all right or all wrong: a temperature cannot be fitted")
    return min(GRID, key=lambda t: log_loss(confidences, right, t))


@dataclass(frozen=True)
class Evaluated:
    """One configuration's results on one dataset (from a `callx eval --json` file)."""

    source: str  # the results file
    result: BackendResult
    meta: dict[str, Any]

    @property
    def taxonomy_version(self) -> str:
        return str(self.meta["taxonomy_version"])


def read_evaluated(path: Path, adapter: str, label: str | None) -> Evaluated:
    """The one configuration of a `callx eval --json` file that answered with `adapter` (and
    is labelled `label`, if given). Raises ValueError, naming the file, for none or several."""
    results, meta = load_results(path)
    own = [r for r in results if r.model.endswith(f"+{adapter}") and label in (None, r.label)]
    if len(own) != 1:
        named = f" labelled {label!r}" if label else ""
        raise ValueError(
            f"{path}: {len(own)} configurations{named} answered with {adapter}; "
            "name one with --label"
        )
    return Evaluated(str(path), own[0], meta)


def raw_confidences(
    result: BackendResult, current: Calibration | None, taxonomy_version: str
) -> tuple[list[float], list[bool]]:
    """The model's own confidences of the calls with one (a calibrated one unscaled by the
    temperature it had), and whether each reason was right."""
    confidences, right = [], []
    for p in result.predictions:
        if p.confidence is None:
            continue
        if p.confidence_calibrated:
            temperature = None if current is None else current.temperature(taxonomy_version)
            if temperature is None:
                raise ValueError(
                    f"{result.label}: its confidences were calibrated by a temperature the "
                    "card no longer holds: evaluate again"
                )
            confidences.append(scaled(p.confidence, 1.0 / temperature))
        else:
            confidences.append(p.confidence)
        right.append(p.reason_right)
    return confidences, right


def _entry(item: Evaluated, current: Calibration | None, new: Calibration) -> dict[str, Any]:
    """What the card records of one evaluation: dataset, taxonomy, accuracy, confidence."""
    r = item.result
    confidences, right = raw_confidences(r, current, item.taxonomy_version)
    entry: dict[str, Any] = {
        "dataset": item.meta.get("dataset", item.source),
        "taxonomy_version": item.taxonomy_version,
        "prompt_version": item.meta.get("prompt_version"),
        "date": item.meta.get("date"),
        "n": r.n,
        "reason_accuracy": round(r.reason_accuracy, 4),
        "reason_accuracy_ci95": [round(x, 4) for x in r.reason_accuracy_ci95],
        "product_match_rate": round(r.product_match_rate, 4),
        "invalid_rate": r.invalid_rate,
        "products_not_in_call": f"{r.products_not_in_call}/{r.products_answered}",
        "calibration_error_raw": round(calibration_error(confidences, right), 4),
        "prior_corrected": bool(r.prior_corrected),
        "definitions_read": bool(r.definitions_read),
    }
    if new.applies_to(item.taxonomy_version, bool(r.prior_corrected), bool(r.definitions_read)):
        calibrated = [new.scale(c, item.taxonomy_version) for c in confidences]
        entry["calibration_error"] = round(calibration_error(calibrated, right), 4)
    entry["accuracy_at_coverage"] = {
        f"{c:.0%}": _rounded(accuracy_at_coverage(confidences, right, c)) for c in COVERAGES
    }
    return entry


def _score_kind(items: list[Evaluated]) -> tuple[bool, bool]:
    """Whether the scores fitted on had the model's prior taken out, and whether they read the
    list's definitions: the same for all of them (a temperature fits one kind of score).
    Raises ValueError naming the files otherwise."""
    kinds = {_kind(item) for item in items}
    if len(kinds) > 1:
        named = ", ".join(f"{item.source} ({_kind_name(*_kind(item))})" for item in items)
        raise ValueError(
            f"taxonomy {items[0].taxonomy_version}: the results mix kinds of scores ({named}); "
            "evaluate them with one CALLX_LLAMACPP__PRIOR_CORRECTION and "
            "CALLX_LLAMACPP__READ_DEFINITIONS"
        )
    return kinds.pop()


def _kind(item: Evaluated) -> tuple[bool, bool]:
    return bool(item.result.prior_corrected), bool(item.result.definitions_read)


def _kind_name(corrected: bool, read: bool) -> str:
    parts = (["prior taken out"] if corrected else []) + (["definitions read"] if read else [])
    return ", ".join(parts) or "raw"


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def calibrate_card(
    card: dict[str, Any], adapter: str, fit: list[Evaluated], measured: list[Evaluated]
) -> dict[str, Any]:
    """The card with a temperature fitted on `fit`, and the figures of every evaluation given
    (`measured` ones are recorded, not fitted on). Raises ValueError, naming the file, for
    results of another adapter."""
    for item in [*fit, *measured]:
        if not item.result.model.endswith(f"+{adapter}"):
            raise ValueError(
                f"{item.source}: results of {item.result.model}, not of the adapter {adapter}"
            )
    current = card_calibration(card)
    fits: dict[str, dict[str, Any]] = {}
    if isinstance((card.get("calibration") or {}).get("taxonomies"), dict):
        fits = dict(card["calibration"]["taxonomies"])  # the taxonomies not refitted stay
    elif current is not None:
        fits = {v: {"temperature": current.temperature(v)} for v in current.taxonomies}
    for version in sorted({item.taxonomy_version for item in fit}):
        corrected, read = _score_kind([item for item in fit if item.taxonomy_version == version])
        confidences: list[float] = []
        right: list[bool] = []
        for item in fit:
            if item.taxonomy_version == version:
                c, r = raw_confidences(item.result, current, version)
                confidences += c
                right += r
        temperature = round(fit_temperature(confidences, right), 4)
        fits[version] = {
            "temperature": temperature,
            "fitted_on": sorted(
                {i.meta.get("dataset", i.source) for i in fit if i.taxonomy_version == version}
            ),
            "calls": len(confidences),
            "prior_corrected": corrected,
            "definitions_read": read,
            "calibration_error_raw": round(calibration_error(confidences, right), 4),
            "calibration_error": round(
                calibration_error([scaled(c, temperature) for c in confidences], right), 4
            ),
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    new = Calibration.of(
        {version: float(f["temperature"]) for version, f in fits.items()},
        {version for version, f in fits.items() if f.get("prior_corrected")},
        {version for version, f in fits.items() if f.get("definitions_read")},
    )
    entries = [_entry(item, current, new) for item in [*fit, *measured]]
    replaced = {(e["dataset"], e["taxonomy_version"]) for e in entries}
    kept = [
        e
        for e in card.get("evaluations", [])
        if (e["dataset"], e["taxonomy_version"]) not in replaced
    ]
    updated = {
        **card,
        "calibration": {"method": METHOD, "taxonomies": dict(sorted(fits.items()))},
        "evaluations": kept + entries,
    }
    return {**updated, "taxonomies": taxonomies_summary(updated)}
