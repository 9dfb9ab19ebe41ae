"""Extractor: a backend, a taxonomy and a retry policy bound together; text in, outcome out."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from app.config import Settings, SettingsError
from app.extraction.pipeline import ExtractionOutcome, extract
from app.extraction.retry import RetryPolicy
from app.extraction.routing import ReviewPolicy
from app.llm import BackendInfo, build_backend, check_backend
from app.llm.base import Backend
from app.llm.prompts import partly_defined_frames
from schemas.taxonomy import Taxonomy, TaxonomyError, load_taxonomy

log = logging.getLogger(__name__)


@dataclass
class Extractor:
    backend: Backend
    taxonomy: Taxonomy
    retry: RetryPolicy
    keep_head_ratio: float = 0.4

    def __call__(self, text: str, language: str | None = None) -> ExtractionOutcome:
        return extract(
            text,
            language=language,
            backend=self.backend,
            taxonomy=self.taxonomy,
            retry=self.retry,
            keep_head_ratio=self.keep_head_ratio,
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, backend: Backend | None = None, taxonomy: Taxonomy | None = None
    ) -> Extractor:
        """The pipeline of the settings; `taxonomy` in place of the configured one."""
        section = settings.extraction
        extractor = cls(
            backend=backend or build_backend(settings),
            taxonomy=taxonomy or load_taxonomy(section.taxonomy_path),
            retry=RetryPolicy(
                section.transport_attempts, section.backoff_base_s, section.backoff_max_s
            ),
            keep_head_ratio=section.keep_head_ratio,
        )
        warn_if_unmeasured(extractor.backend, extractor.taxonomy)
        warn_if_partly_translated(extractor.taxonomy)
        return extractor


def warn_if_unmeasured(backend: Backend, taxonomy: Taxonomy) -> bool:
    """Log a warning where the local model's card says it was neither trained nor evaluated on
    the taxonomy: its accuracy there is unknown, its confidences are marked uncalibrated."""
    measured_on = getattr(backend, "measured_on", None)
    if measured_on is None or measured_on(taxonomy):
        return False
    log.warning(
        "model %s was never trained or evaluated on taxonomy %s: its accuracy on it is unknown "
        "and its confidences are marked uncalibrated (measure it with `callx eval`, then "
        "`callx calibrate`)",
        backend.model,
        taxonomy.version,
        extra={"model": backend.model, "taxonomy_version": taxonomy.version},
    )
    return True


def warn_if_partly_translated(taxonomy: Taxonomy) -> bool:
    """Log a warning for each language with a frame of its own that some of the list's reasons
    are defined in but not all (app/llm/prompts.py, partly_defined_frames)."""
    untranslated = partly_defined_frames(taxonomy)
    for language, codes in untranslated.items():
        log.warning(
            "taxonomy %s defines some reasons in %s but not %s: calls in %s are read against "
            "the main definitions until every reason has one",
            taxonomy.version,
            language,
            ", ".join(codes),
            language,
            extra={"taxonomy_version": taxonomy.version, "language": language, "codes": codes},
        )
    return bool(untranslated)


def check_extraction_settings(settings: Settings) -> tuple[BackendInfo, Taxonomy]:
    """What a worker of these settings would run, checked before anything starts (no model
    loaded): the backend's settings and the taxonomy file. Raises SettingsError."""
    try:
        taxonomy = load_taxonomy(settings.extraction.taxonomy_path)
    except TaxonomyError as exc:
        raise SettingsError(f"CALLX_EXTRACTION__TAXONOMY_PATH: {exc}") from None
    ReviewPolicy.from_settings(settings.review, taxonomy)  # per-reason thresholds' codes
    return check_backend(settings), taxonomy
