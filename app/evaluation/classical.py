"""The classical baseline: TF-IDF and logistic regression, trained on a labelled file's reasons.

What a team would try before any language model, and what callx's local model must beat:
`callx eval --backend classical:train=FILE` scores it exactly as the other backends (the same
pipeline, metrics and report). It classifies the reason only: a bag of words names no
product, so its product is always null (it matches only calls without a product). It needs
the `eval` extra (scikit-learn).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from app.llm.base import BackendAnswer, ExtractionRequest
from app.records import read_records, record_text
from schemas.extraction import answer_model
from schemas.taxonomy import Taxonomy


class MissingEvalExtraError(RuntimeError):
    pass


class ClassicalBaseline:
    """A Backend (app/llm/base.py) that a scikit-learn pipeline answers."""

    name = "classical"
    concurrent = False

    def __init__(self, pipeline: Any, model: str, train_s: float) -> None:
        self._pipeline = pipeline
        self.model = model
        self.train_s = train_s

    @classmethod
    def train(cls, paths: list[Path], taxonomy: Taxonomy, *, c: float = 10.0) -> ClassicalBaseline:
        """Fit on every record of `paths` (JSONL or CSV: transcript, reason) whose reason is a
        code of `taxonomy`: word 1-2-grams, sublinear TF-IDF, multinomial logistic regression."""
        try:
            from sklearn.feature_extraction.text import TfidfVectorizer
            from sklearn.linear_model import LogisticRegression
            from sklearn.pipeline import make_pipeline
        except ImportError as exc:
            raise MissingEvalExtraError(
                "the classical baseline needs scikit-learn: pip install -e '.[eval]'"
            ) from exc
        texts, reasons = [], []
        for path in paths:
            for record in read_records(path):
                text, reason = record_text(record), record.get("reason")
                if text and reason in taxonomy.codes:
                    texts.append(text)
                    reasons.append(reason)
        names = "+".join(path.name for path in paths)
        if len(set(reasons)) < 2:
            raise ValueError(
                f"{names}: fewer than two of the taxonomy's reasons among the records "
                "(give the files' taxonomy with --taxonomy)"
            )
        started = time.perf_counter()
        pipeline = make_pipeline(
            TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, strip_accents="unicode"),
            LogisticRegression(C=c, max_iter=2000),
        )
        pipeline.fit(texts, reasons)
        model = f"tfidf-logreg ({names}, {len(texts)} records)"
        return cls(pipeline, model, time.perf_counter() - started)

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def transcript_budget(self, taxonomy: Taxonomy) -> int:
        return 1_000_000  # no context window: the whole call is read

    def extract(self, request: ExtractionRequest) -> BackendAnswer:
        probabilities = self._pipeline.predict_proba([request.transcript])[0]
        classes = list(self._pipeline.classes_)
        # Only the codes of the request's taxonomy: the answer must stay valid.
        allowed = [
            (p, c)
            for p, c in zip(probabilities, classes, strict=True)
            if c in request.taxonomy.codes
        ]
        confidence, reason = max(allowed)
        answer = answer_model(request.taxonomy)(product=None, reason=reason)
        return BackendAnswer(
            answer=answer,
            raw_answer=json.dumps({"product": None, "reason": reason}),
            prompt_tokens=None,
            completion_tokens=None,
            confidence=round(float(confidence), 4),
        )
