"""The gate's measurement: a candidate adapter and the promoted one run through `callx eval`'s
pipeline on the same labelled calls, compared call by call (exact McNemar on the reason); and
on guards, labelled calls of other lists or sets the candidate must not lose ground on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.config import Settings
from app.evaluation.paired import compare
from app.evaluation.runner import BackendConfig, BackendResult, evaluate, load_dataset
from app.llm.model_files import file_sha256
from app.registry import GUARD_MAX_LOSS
from app.registry.service import Comparison
from schemas.taxonomy import Taxonomy, resolve_taxonomy, split_taxonomy_ref


@dataclass(frozen=True)
class Guard:
    """Labelled calls a candidate must not lose more than `max_loss` points of reason accuracy
    on against the promoted adapter: for example callx's own calls in the default list, where
    a deployment trains on its own list but still runs the default one."""

    dataset: Path
    taxonomy: Taxonomy
    taxonomy_ref: str  # as given: a built-in name, a file, or "configured"
    records: list[dict[str, Any]]  # read and checked when the guard is given, before any run
    max_loss: float = GUARD_MAX_LOSS

    @classmethod
    def parse(cls, spec: str, default: Taxonomy, max_loss: float = GUARD_MAX_LOSS) -> Guard:
        """`FILE` (in the default taxonomy) or `FILE@TAXONOMY` (a built-in name or a file),
        its records read now, so that a wrong file fails before minutes of training or
        measuring. Raises ValueError saying what is wrong."""
        dataset, ref = split_taxonomy_ref(spec)
        if not dataset.is_file():
            raise ValueError(f"no such file: {dataset}")
        if max_loss < 0:
            raise ValueError(f"a guard's allowance is points that may be lost, not {max_loss}")
        taxonomy = default if ref is None else resolve_taxonomy(ref)
        try:
            records = load_dataset(dataset, taxonomy, None, 0)
        except ValueError as exc:  # the runner's advice names eval's option: say the guard's
            message = str(exc).replace("pass the dataset's taxonomy with --taxonomy", "")
            raise ValueError(
                f"{message.rstrip('; ')}; give the guard its list as FILE@TAXONOMY"
            ) from None
        if not records:
            raise ValueError(f"{dataset} holds no labelled call")
        return cls(dataset, taxonomy, ref or "configured", records, max_loss)


def guard_figures(guard: Guard, ours: BackendResult, theirs: BackendResult) -> dict[str, Any]:
    """A guard's figures, as `Comparison.verdict`, the refusal and the API read them: held
    where the candidate lost at most `max_loss` points (1e-9 for float noise, no rounding)."""
    paired = compare(theirs, ours)
    lost = 100 * (theirs.reason_accuracy - ours.reason_accuracy)
    return {
        "dataset": str(guard.dataset),
        "dataset_sha256": file_sha256(guard.dataset),
        "taxonomy": guard.taxonomy_ref,
        "taxonomy_version": guard.taxonomy.version,
        "calls": ours.n,
        "reason_accuracy": round(ours.reason_accuracy, 4),
        "baseline_reason_accuracy": round(theirs.reason_accuracy, 4),
        "points_lost": round(lost, 2),
        "max_loss": guard.max_loss,
        "held": lost <= guard.max_loss + 1e-9,
        "only_candidate_right": paired.only_other_right,
        "only_baseline_right": paired.only_reference_right,
        "p_value": round(paired.p_value, 6),
    }


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
    guards: tuple[Guard, ...] = (),
) -> Comparison:
    """The candidate, and the promoted adapter where there is one, on every call of the
    dataset (no sample: the gate's figure is the split's), then on every call of each guard
    (where there is a promoted adapter to lose ground against)."""
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
    held = (
        []
        if baseline is None
        else [_guarded(settings, candidate, baseline, guard, on_record) for guard in guards]
    )
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
            # Each as it would be served: the prior taken out on a list it was not trained on.
            "candidate_prior_corrected": ours.prior_corrected,
            "baseline_prior_corrected": None if theirs is None else theirs.prior_corrected,
        },
        guards=tuple(held),
    )


def _guarded(
    settings: Settings,
    candidate: Path,
    baseline: Path,
    guard: Guard,
    on_record: Callable[[], None],
) -> dict[str, Any]:
    """Both adapters on every call of a guard."""
    records, taxonomy = guard.records, guard.taxonomy
    ours = run_adapter(settings, candidate, "candidate", records, taxonomy, on_record)
    theirs = run_adapter(settings, baseline, "promoted", records, taxonomy, on_record)
    return guard_figures(guard, ours, theirs)
