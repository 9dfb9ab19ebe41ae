"""The one small interface every LLM backend implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from schemas.extraction import CallExtractionBase
from schemas.taxonomy import Taxonomy


@dataclass(frozen=True)
class ExtractionRequest:
    transcript: str
    taxonomy: Taxonomy
    # The call's language as submitted (a BCP 47 tag), where it is known.
    language: str | None = None


@dataclass(frozen=True)
class BackendAnswer:
    answer: CallExtractionBase
    raw_answer: str
    prompt_tokens: int | None
    completion_tokens: int | None
    attempts: int = 1
    confidence: float | None = None
    # Whether `confidence` is a calibrated probability of being right (the adapter's card holds
    # a calibration fitted on this taxonomy), or only the model's own score.
    confidence_calibrated: bool = False
    # The model's own probability of its product answer (null or the name), where it has one.
    product_confidence: float | None = None


class Backend(Protocol):
    """An LLM that turns a transcript into a validated answer for a taxonomy."""

    name: str
    model: str
    # Whether one process may run many calls at once, from threads: an API, yes (the calls
    # wait on the network); a model in this process, no (one call uses every core given).
    concurrent: bool

    def count_tokens(self, text: str) -> int:
        """Tokens `text` takes in this backend's prompt (an upper estimate for remote models)."""
        ...

    def transcript_budget(self, taxonomy: Taxonomy) -> int:
        """Tokens left for the transcript once the prompt and the answer are accounted for."""
        ...

    def extract(self, request: ExtractionRequest) -> BackendAnswer:
        """Ask the model. Raises TransientBackendError, InvalidAnswerError or BackendError."""
        ...
