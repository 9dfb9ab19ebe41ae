"""Which calls need a person: the review decision, made when an extraction is stored and stored
with it (the threshold and audit rate it was made with too), so that changing the settings
later does not rewrite history."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

from app.config import ReviewSettings, SettingsError
from app.db.models import EXPLORE_CAUSE
from app.extraction.pipeline import ExtractionOutcome
from app.scoring import product_in_call
from schemas.taxonomy import Taxonomy

# Why a call needs review, besides the audit sample (which is drawn apart, in_audit).
FAILED = "failed"
LOW_CONFIDENCE = "low_confidence"
UNCALIBRATED = "uncalibrated"
# A product with a word the call never says: invented or misread, however sure the reason is.
PRODUCT_NOT_SAID = "product_not_said"
# A call the model was sure of, drawn at random for people to label (CALLX_REVIEW__
# EXPLORE_RATE): the labels of the least sure calls alone miss what the model is wrongly sure
# of, and a fine-tune on them learns a skewed share of reasons (docs/flywheel.md, v6).
EXPLORE = EXPLORE_CAUSE
CAUSES = (FAILED, LOW_CONFIDENCE, UNCALIBRATED, PRODUCT_NOT_SAID, EXPLORE)
# The calls people review because the model was unsure of the reason or failed (/v1/quality's
# biased figure).
UNSURE_CAUSES = (FAILED, LOW_CONFIDENCE, UNCALIBRATED)
# The queue's order: the audit sample first (the unbiased figure of /v1/quality needs its calls
# reviewed, not left behind the unsure ones), then calls without a confidence (failed, or a
# backend that gives none), then the lowest confidence, with the explored calls among them,
# each at a value drawn at random below the threshold.
AUDIT_PRIORITY = -2.0
NO_CONFIDENCE_PRIORITY = -1.0


def _hash64(salt: bytes, transcript_id: uuid.UUID) -> int:
    """64 bits of a hash of the call's id: independent of everything the model says, and the
    same on every extraction of the call."""
    return int.from_bytes(hashlib.sha256(salt + transcript_id.bytes).digest()[:8], "big")


def in_audit_sample(transcript_id: uuid.UUID, rate: float) -> bool:
    """Whether the call is in the audit sample at `rate`: a draw from a hash of its id, so
    independent of everything the model says, and the same on every extraction of the call
    (a re-extracted audit call stays one, and its labels keep measuring the model)."""
    return _hash64(b"callx-audit:", transcript_id) < rate * 2**64


def explore_place(transcript_id: uuid.UUID, rate: float) -> float | None:
    """Where in [0, 1) a call drawn for exploration at `rate` goes among the unsure calls (a
    share of the threshold); None: not drawn. A draw of its own, apart from the audit's: a
    higher rate keeps the calls a lower one drew."""
    if _hash64(b"callx-explore:", transcript_id) >= rate * 2**64:
        return None
    return _hash64(b"callx-explore-place:", transcript_id) / 2**64 * (1 - 2**-52)


@dataclass(frozen=True)
class ReviewDecision:
    cause: str | None  # one of CAUSES; None: auto-accepted
    in_audit: bool
    threshold: float
    audit_rate: float
    priority: float | None  # the queue's order (lowest first); None: not in the queue

    def columns(self) -> dict[str, Any]:
        """The extraction's review columns (app/db/models.py)."""
        return {
            "review_cause": self.cause,
            "in_audit": self.in_audit,
            "review_threshold": self.threshold,
            "audit_rate": self.audit_rate,
            "review_priority": self.priority,
        }


@dataclass(frozen=True)
class ReviewPolicy:
    threshold: float = 0.9
    reason_thresholds: tuple[tuple[str, float], ...] = ()
    audit_rate: float = 0.02
    uncalibrated: str = "review"
    explore_rate: float = 0.0
    product_not_said: str = "review"

    @classmethod
    def from_settings(cls, settings: ReviewSettings, taxonomy: Taxonomy) -> ReviewPolicy:
        """The policy of CALLX_REVIEW__*; a per-reason threshold for a code the taxonomy does
        not have stops start-up (SettingsError) rather than never applying."""
        unknown = sorted(set(settings.reason_thresholds) - set(taxonomy.codes))
        if unknown:
            raise SettingsError(
                f"CALLX_REVIEW__REASON_THRESHOLDS: {unknown[0]!r} is not a reason code of the "
                f"taxonomy {taxonomy.version}; its codes: {', '.join(taxonomy.codes)}"
            )
        return cls(
            threshold=settings.threshold,
            reason_thresholds=tuple(sorted(settings.reason_thresholds.items())),
            audit_rate=settings.audit_rate,
            uncalibrated=settings.uncalibrated,
            explore_rate=settings.explore_rate,
            product_not_said=settings.product_not_said,
        )

    def threshold_for(self, reason: str | None) -> float:
        return dict(self.reason_thresholds).get(reason or "", self.threshold)

    def decide(
        self, transcript_id: uuid.UUID, outcome: ExtractionOutcome, transcript: str
    ) -> ReviewDecision:
        threshold = self.threshold_for(outcome.reason)
        confidence = outcome.confidence
        cause: str | None = None
        if not outcome.succeeded:
            cause = FAILED
        elif not outcome.confidence_calibrated and self.uncalibrated == "review":
            cause = UNCALIBRATED
        elif (confidence if confidence is not None else 0.0) < threshold:
            cause = LOW_CONFIDENCE
        elif (
            self.product_not_said == "review"
            and outcome.product is not None
            and not product_in_call(outcome.product, transcript)
        ):
            cause = PRODUCT_NOT_SAID
        in_audit = in_audit_sample(transcript_id, self.audit_rate)
        priority = None
        sure = outcome.succeeded and confidence is not None and confidence >= threshold
        if sure and cause in (None, UNCALIBRATED) and not in_audit:
            place = explore_place(transcript_id, self.explore_rate)
            if place is not None:
                priority = place * threshold
                # A sure call goes to people as explored. An uncalibrated one already does
                # (every call of a list never calibrated does): the draw moves it from the end
                # of the queue, where its raw score puts it, in among the unsure ones.
                cause = EXPLORE if cause is None else cause
        if in_audit:
            priority = AUDIT_PRIORITY
        elif cause == PRODUCT_NOT_SAID:
            # Its reason is sure: queued by how sure the model is of the product (often far
            # less), not behind every unsure reason.
            priority = (
                outcome.product_confidence if outcome.product_confidence is not None else threshold
            )
        elif cause is not None and priority is None:
            priority = confidence if confidence is not None else NO_CONFIDENCE_PRIORITY
        return ReviewDecision(cause, in_audit, threshold, self.audit_rate, priority)
