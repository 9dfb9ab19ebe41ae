"""FakeBackend: keyword rules instead of a model. For fast tests and load tests of callx itself."""

from __future__ import annotations

import json
import re
import time

from app.llm.base import BackendAnswer, ExtractionRequest
from app.llm.errors import InvalidAnswerError
from schemas.extraction import answer_model
from schemas.taxonomy import Taxonomy

_KEYWORDS = {
    "breakdown": (
        "panne",
        "ne marche",
        "ne fonctionne",
        "broken",
        "not working",
        "stopped working",
    ),
    "usage_help": ("comment ", "how do i", "how to", "configurer", "set up", "install"),
    "sales_inquiry": ("prix", "price", "offre", "offer", "tarif", "available", "disponible"),
    "billing": ("facture", "invoice", "bill", "charged", "prélèvement", "payment"),
    "delivery": ("livraison", "delivery", "colis", "parcel", "shipped", "commande"),
    "cancellation": ("résilier", "resilier", "cancel", "retour", "return", "résiliation"),
}
_PRODUCT = re.compile(r"\b(?:my|mon|ma|la|le)\s+([A-Za-zÀ-ÿ0-9][\w\- ]{2,30}?)(?=[ .,!?]|$)", re.I)


# With scored=True: `[confidence=0.73]` in a transcript is the answer's (calibrated) confidence,
# `[reason=billing]` its reason, and `[invalid]` makes the call fail (an invalid answer).
_CONFIDENCE = re.compile(r"\[confidence=([01](?:\.\d+)?)\]")
_REASON = re.compile(r"\[reason=(\w+)\]")


class FakeBackend:
    """Deterministic and instant (or with `latency_s` of simulated model time). `scored`: the
    transcript says the confidence and reason to answer, or to fail (the review tests)."""

    name = "fake"
    concurrent = True
    MODEL = "fake-keywords-1"

    def __init__(self, latency_s: float = 0.0, *, scored: bool = False, model: str = MODEL) -> None:
        self.latency_s = latency_s
        self.scored = scored
        self.model = model

    def count_tokens(self, text: str) -> int:
        return max(1, len(text) // 4)

    def transcript_budget(self, taxonomy: Taxonomy) -> int:
        return 8000

    def extract(self, request: ExtractionRequest) -> BackendAnswer:
        if self.latency_s:
            time.sleep(self.latency_s)
        text = request.transcript.lower()
        reason = next(
            (
                code
                for code, words in _KEYWORDS.items()
                if code in request.taxonomy.codes and any(w in text for w in words)
            ),
            "other" if "other" in request.taxonomy.codes else request.taxonomy.codes[-1],
        )
        confidence = None
        if self.scored:
            if "[invalid]" in text:
                raise InvalidAnswerError("the answer did not validate", raw_answer="{", attempts=3)
            scripted = _REASON.search(request.transcript)
            reason = scripted.group(1) if scripted else reason
            score = _CONFIDENCE.search(request.transcript)
            confidence = float(score.group(1)) if score else None
        match = _PRODUCT.search(request.transcript)
        raw = json.dumps({"product": match.group(1) if match else None, "reason": reason})
        answer = answer_model(request.taxonomy).model_validate_json(raw)
        return BackendAnswer(
            answer=answer,
            raw_answer=raw,
            prompt_tokens=self.count_tokens(request.transcript),
            completion_tokens=len(raw) // 4,
            confidence=confidence,
            confidence_calibrated=confidence is not None,
        )
