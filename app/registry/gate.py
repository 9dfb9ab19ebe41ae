"""The gate's measurement: a candidate adapter and the promoted one run through `callx eval`'s
pipeline on the same labelled calls, compared call by call (exact McNemar on the reason)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from app.config import Settings
from app.evaluation.paired import compare
from app.evaluation.runner import BackendConfig, BackendResult, evaluate, load_dataset
from app.llm.model_files import file_sha256
from app.registry.service import Comparison
from schemas.taxonomy import Taxonomy


def run_adapter(
    settings: Settings,
    adapter: Path,
    label: str,
    records: list[dict[str, object]],
    taxonomy: Taxonomy,
    on_record: Callable[[], None],
) -> BackendResult:
    """One adapter on the local backend (the settings' base model) over the records."""
    config = BackendConfig.parse(f"llamacpp:lora_path={adapter},label={label}")
    extractor = config.extractor(settings, taxonomy)
    return evaluate(extractor, config, records, on_record)


def compare_adapters(
    settings: Settings,
    candidate: Path,
    baseline: Path | None,
    dataset: Path,
    taxonomy: Taxonomy,
    on_record: Callable[[], None] = lambda: None,
) -> Comparison:
    """The candidate, and the promoted adapter where there is one, on every call of the
    dataset (no sample: the gate's figure is the split's)."""
    records = load_dataset(dataset, taxonomy, None, 0)
    if not records:
        raise ValueError(f"{dataset} holds no labelled call")
    ours = run_adapter(settings, candidate, "candidate", records, taxonomy, on_record)
    theirs = (
        None
        if baseline is None
        else run_adapter(settings, baseline, "promoted", records, taxonomy, on_record)
    )
    paired = None if theirs is None else compare(theirs, ours)
    return Comparison(
        dataset=str(dataset),
        dataset_sha256=file_sha256(dataset),
        taxonomy_version=taxonomy.version,
        calls=len(records),
        reason_accuracy=round(ours.reason_accuracy, 4),
        baseline_reason_accuracy=None if theirs is None else round(theirs.reason_accuracy, 4),
        product_rate=round(ours.product_match_rate, 4),
        baseline_product_rate=None if theirs is None else round(theirs.product_match_rate, 4),
        only_candidate_right=None if paired is None else paired.only_other_right,
        only_baseline_right=None if paired is None else paired.only_reference_right,
        p_value=None if paired is None else round(paired.p_value, 6),
        details={
            "candidate_ci95": list(ours.reason_accuracy_ci95),
            "baseline_ci95": None if theirs is None else list(theirs.reason_accuracy_ci95),
            "candidate_model": ours.model,
            "baseline_model": None if theirs is None else theirs.model,
        },
    )
