"""Extractor: a backend, a taxonomy and a retry policy bound together; text in, outcome out."""

from __future__ import annotations

from dataclasses import dataclass

from app.config import Settings, SettingsError
from app.extraction.pipeline import ExtractionOutcome, extract
from app.extraction.retry import RetryPolicy
from app.llm import BackendInfo, build_backend, check_backend
from app.llm.base import Backend
from schemas.taxonomy import Taxonomy, TaxonomyError, load_taxonomy


@dataclass
class Extractor:
    backend: Backend
    taxonomy: Taxonomy
    retry: RetryPolicy
    keep_head_ratio: float = 0.4

    def __call__(self, text: str) -> ExtractionOutcome:
        return extract(
            text,
            backend=self.backend,
            taxonomy=self.taxonomy,
            retry=self.retry,
            keep_head_ratio=self.keep_head_ratio,
        )

    @classmethod
    def from_settings(cls, settings: Settings, backend: Backend | None = None) -> Extractor:
        section = settings.extraction
        return cls(
            backend=backend or build_backend(settings),
            taxonomy=load_taxonomy(section.taxonomy_path),
            retry=RetryPolicy(
                section.transport_attempts, section.backoff_base_s, section.backoff_max_s
            ),
            keep_head_ratio=section.keep_head_ratio,
        )


def check_extraction_settings(settings: Settings) -> tuple[BackendInfo, Taxonomy]:
    """What a worker of these settings would run, checked before anything starts (no model
    loaded): the backend's settings and the taxonomy file. Raises SettingsError."""
    try:
        taxonomy = load_taxonomy(settings.extraction.taxonomy_path)
    except TaxonomyError as exc:
        raise SettingsError(f"CALLX_EXTRACTION__TAXONOMY_PATH: {exc}") from None
    return check_backend(settings), taxonomy
