"""Running backend configurations over a labelled dataset, through the service's pipeline."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from app.config import Settings, SettingsError
from app.evaluation.metrics import (
    COVERAGES,
    PRODUCT_RULE,
    accuracy_at_coverage,
    calibration_error,
    percentile,
    product_in_call,
    product_matches,
    reason_scores,
    wilson_interval,
)
from app.extraction.extractor import Extractor
from app.llm import check_backend
from app.records import read_records, record_language, record_text
from schemas.taxonomy import Taxonomy

SECTIONS = {"llamacpp": "llamacpp", "openai": "openai", "fake": "extraction"}
# Not a service backend: the TF-IDF + logistic regression baseline, trained on `train=FILE`.
CLASSICAL = "classical"
# Backends whose model is memory-mapped in this process: their first call pays for its loading.
MAPPED_MODEL_BACKENDS = {"llamacpp"}
# Options of every configuration, besides its backend's settings.
REPORT_OPTIONS = {"label", "price_in", "price_out"}


def _section_fields(section: str) -> list[str]:
    """The settings of one section of Settings (`llamacpp`: model_path, n_ctx, ...)."""
    model = Settings.model_fields[section].annotation
    return list(getattr(model, "model_fields", {}))


@dataclass(frozen=True)
class BackendConfig:
    """`NAME[:key=value,...]`, e.g. `llamacpp:lora_path=adapters/callx.gguf`,
    `openai:preset=mistral,model=mistral-small-latest,price_in=0.0002,price_out=0.0006` or
    `classical:train=train.jsonl[+more.jsonl]` (the classical baseline)."""

    spec: str
    backend: str
    options: dict[str, str]

    @classmethod
    def parse(cls, spec: str) -> BackendConfig:
        name, _, rest = spec.partition(":")
        if name not in SECTIONS and name != CLASSICAL:
            raise ValueError(
                f"unknown backend {name!r} in {spec!r}: use llamacpp, openai, classical or fake"
            )
        options: dict[str, str] = {}
        for item in filter(None, rest.split(",")):
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"expected key=value in {spec!r}, found {item!r}")
            options[key.strip()] = value.strip()
        if name == CLASSICAL and set(options) - {"label"} != {"train"}:
            raise ValueError(f"{spec!r}: the classical baseline takes train=FILE (and label=)")
        if name != CLASSICAL:
            allowed = sorted(set(_section_fields(SECTIONS[name])) | REPORT_OPTIONS)
            unknown = [key for key in options if key not in allowed]
            if unknown:
                raise ValueError(
                    f"{spec!r}: unknown option {unknown[0]!r} for {name}; "
                    f"its options: {', '.join(allowed)}"
                )
        for key in ("price_in", "price_out"):
            try:
                float(options.get(key, 0.0))
            except ValueError:
                raise ValueError(f"{spec!r}: {key} must be a number") from None
        return cls(spec, name, options)

    @property
    def label(self) -> str:
        return self.options.get("label", self.spec)

    def settings(self, base: Settings) -> Settings:
        extra = {
            k: v for k, v in self.options.items() if k not in {"label", "price_in", "price_out"}
        }
        # Validated as a whole, so that `n_ctx=2048` becomes an int and a bad value fails loudly.
        data = base.model_dump()
        data[SECTIONS[self.backend]].update(extra)
        data["extraction"]["backend"] = self.backend
        try:
            return Settings.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc'][1:]) or 'settings'}: {error['msg']}"
                for error in exc.errors(include_url=False)
            )
            raise ValueError(f"{self.spec!r}: {problems}") from None

    def check(self, base: Settings) -> None:
        """Raises ValueError for a configuration that cannot be built (no model is loaded)."""
        if self.backend == CLASSICAL:
            for name in self.options["train"].split("+"):
                if not Path(name).is_file():
                    raise ValueError(f"{self.spec!r}: no such training file: {name}")
            return
        try:
            check_backend(self.settings(base))
        except SettingsError as exc:
            raise ValueError(f"{self.spec!r}: {exc}") from None

    def price(self, key: str) -> float:
        return float(self.options.get(key, 0.0))

    def extractor(self, base: Settings, taxonomy: Taxonomy) -> Extractor:
        """The pipeline with this configuration's backend (the baseline: trained here)."""
        if self.backend == CLASSICAL:
            from app.evaluation.classical import ClassicalBaseline

            files = [Path(name) for name in self.options["train"].split("+")]
            baseline = ClassicalBaseline.train(files, taxonomy)
            return Extractor.from_settings(base, backend=baseline, taxonomy=taxonomy)
        return Extractor.from_settings(self.settings(base), taxonomy=taxonomy)


@dataclass
class Prediction:
    id: str
    reason: str | None
    product: str | None
    expected_reason: str
    expected_product: str | None
    status: str
    confidence: float | None
    latency_ms: int
    prompt_tokens: int | None
    completion_tokens: int | None
    error: str | None
    error_kind: str | None
    confidence_calibrated: bool = False
    # Whether every word of the answered product is in the call (None: no product answered).
    product_in_call: bool | None = None
    product_confidence: float | None = None

    @property
    def reason_right(self) -> bool:
        return self.reason == self.expected_reason

    @property
    def product_right(self) -> bool:
        return self.status == "succeeded" and product_matches(self.product, self.expected_product)


@dataclass
class BackendResult:
    label: str
    backend: str
    model: str
    n: int
    reason_accuracy: float
    reason_accuracy_ci95: tuple[float, float]
    reason_macro_f1: float
    product_match_rate: float
    invalid_rate: float
    failed: int
    latency_p50_ms: float
    latency_p95_ms: float
    prompt_tokens: int
    completion_tokens: int
    cost: float
    per_class: dict[str, dict[str, float]]
    confusion: list[list[int]]
    # Over the calls with a confidence (metrics.CALIBRATION_RULE); None where none has one.
    calibration_error: float | None = None
    accuracy_at_coverage: dict[str, float | None] = field(default_factory=dict)
    calibrated: int = 0  # calls whose confidence is calibrated
    products_answered: int = 0
    products_not_in_call: int = 0  # answered products with a word the call never says
    # The product's confidence (the model's own) against the product match; None: none given.
    product_calibration_error: float | None = None
    # Whether the local model's prior over the codes was taken out (prior_correction); None:
    # a backend without one.
    prior_corrected: bool | None = None
    # Whether the list's definitions were read too (read_definitions); None: a backend without.
    definitions_read: bool | None = None
    # The reader that read them (an adapter's file name); None: the base model, or not read.
    reader: str | None = None
    predictions: list[Prediction] = field(repr=False, default_factory=list)


def load_dataset(
    path: Path, taxonomy: Taxonomy, limit: int | None, seed: int
) -> list[dict[str, Any]]:
    """Labelled records (`external_id`, `text`, `reason`, `product`: read_records' names); a
    seeded sample if `limit`."""
    records = read_records(path)
    for number, record in enumerate(records, start=1):
        if record_text(record) is None or record.get("reason") not in taxonomy.codes:
            raise ValueError(
                f"{path} record {number}: needs a text and a reason among "
                f"{', '.join(taxonomy.codes)} (found {record.get('reason')!r}); "
                "pass the dataset's taxonomy with --taxonomy"
            )
    if limit is not None and limit < len(records):
        records = random.Random(seed).sample(records, limit)
    return records


def evaluate(
    extractor: Extractor, config: BackendConfig, records: list[dict[str, Any]], on_record: Any
) -> BackendResult:
    if records and extractor.backend.name in MAPPED_MODEL_BACKENDS:
        # Untimed and unscored: the first call reads the weights from disk (loading only maps
        # them) and evaluates the prompt head that later calls reuse (and, on a list read by
        # its definitions, measures their prior: once per language the records are in). The
        # latencies are those of a running worker, not of its start.
        first_of_language = {record_language(r): r for r in reversed(records)}
        for language, record in first_of_language.items():
            extractor(record_text(record) or "", language)
    predictions: list[Prediction] = []
    for position, record in enumerate(records):
        text = record_text(record) or ""
        outcome = extractor(text, record_language(record))
        predictions.append(
            Prediction(
                id=record.get("external_id") or str(position),
                reason=outcome.reason,
                product=outcome.product,
                expected_reason=record["reason"],
                expected_product=record.get("product"),
                status=outcome.status,
                confidence=outcome.confidence,
                latency_ms=outcome.latency_ms,
                prompt_tokens=outcome.prompt_tokens,
                completion_tokens=outcome.completion_tokens,
                error=outcome.error,
                error_kind=outcome.error_kind,
                confidence_calibrated=outcome.confidence_calibrated,
                product_confidence=outcome.product_confidence,
                product_in_call=None
                if outcome.product is None
                else product_in_call(outcome.product, text),
            )
        )
        on_record()
    return score(config, extractor, predictions)


def score(
    config: BackendConfig, extractor: Extractor, predictions: list[Prediction]
) -> BackendResult:
    labels = list(extractor.taxonomy.codes)
    accuracy, macro_f1, per_class, confusion = reason_scores(
        [p.reason for p in predictions], [p.expected_reason for p in predictions], labels
    )
    latencies = [p.latency_ms for p in predictions]
    prompt = sum(p.prompt_tokens or 0 for p in predictions)
    completion = sum(p.completion_tokens or 0 for p in predictions)
    kinds = Counter(p.status for p in predictions)
    n = len(predictions)
    correct = sum(p.reason_right for p in predictions)
    scored = [p for p in predictions if p.confidence is not None]
    confidences = [p.confidence or 0.0 for p in scored]
    right = [p.reason_right for p in scored]
    corrects_prior = getattr(extractor.backend, "corrects_prior", None)
    reads_definitions = getattr(extractor.backend, "reads_definitions", None)
    read = None if reads_definitions is None else reads_definitions(extractor.taxonomy)
    return BackendResult(
        label=config.label,
        backend=extractor.backend.name,
        model=extractor.backend.model,
        n=n,
        reason_accuracy=accuracy,
        reason_accuracy_ci95=wilson_interval(correct, n),
        reason_macro_f1=macro_f1,
        product_match_rate=sum(product_matches(p.product, p.expected_product) for p in predictions)
        / n
        if n
        else 0.0,
        invalid_rate=sum(p.error_kind == "invalid_answer" for p in predictions) / n if n else 0.0,
        failed=kinds.get("failed", 0),
        latency_p50_ms=percentile(latencies, 0.5),
        latency_p95_ms=percentile(latencies, 0.95),
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost=prompt / 1000 * config.price("price_in")
        + completion / 1000 * config.price("price_out"),
        per_class={k: asdict(v) for k, v in per_class.items()},
        confusion=confusion,
        calibration_error=calibration_error(confidences, right) if scored else None,
        accuracy_at_coverage={
            f"{coverage:.0%}": accuracy_at_coverage(confidences, right, coverage)
            for coverage in COVERAGES
        }
        if scored
        else {},
        calibrated=sum(p.confidence_calibrated for p in predictions),
        products_answered=sum(p.product_in_call is not None for p in predictions),
        products_not_in_call=sum(p.product_in_call is False for p in predictions),
        product_calibration_error=_product_calibration_error(predictions),
        prior_corrected=None if corrects_prior is None else corrects_prior(extractor.taxonomy),
        definitions_read=read,
        reader=getattr(extractor.backend, "reader", None) if read else None,
        predictions=predictions,
    )


def _product_calibration_error(predictions: list[Prediction]) -> float | None:
    scored = [p for p in predictions if p.product_confidence is not None]
    if not scored:
        return None
    return calibration_error(
        [p.product_confidence or 0.0 for p in scored], [p.product_right for p in scored]
    )


__all__ = ["PRODUCT_RULE", "BackendConfig", "BackendResult", "evaluate", "load_dataset"]
