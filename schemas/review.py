"""The review loop's request and response bodies: labels, the review queue, production quality."""

from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from schemas.api import CallFields, ExtractionRead, LabelRead, UtcDatetime

_CONTROL = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"


def _blank_is_none(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


class LabelWrite(BaseModel):
    """A person's answer for a call. `version`: the label version it replaces, as read (0 or
    absent: the call has no label yet); another reviewer's newer label makes it a 409."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"reason": "billing", "product": "Forfait Sosh 100 Go", "version": 0}]
        },
    )

    reason: str = Field(
        min_length=1, max_length=40, description="A reason code of the call's taxonomy."
    )
    product: Annotated[str | None, AfterValidator(_blank_is_none)] = Field(
        default=None,
        max_length=200,
        pattern=_CONTROL,
        description="The product the call is about, with its brand and model where the call "
        "names them; null (or empty) when it is about none.",
    )
    note: Annotated[str | None, AfterValidator(_blank_is_none)] = Field(
        default=None, max_length=2000, pattern=_CONTROL, description="Anything to keep with it."
    )
    version: int = Field(
        default=0,
        ge=0,
        description="The call's label version this one replaces, as you read it (0: none).",
    )


class LabelHistory(BaseModel):
    """Every label of a call, oldest first."""

    items: list[LabelRead] = Field(description="The labels, version 1 first.")


class ReviewItem(CallFields):
    """A call waiting for a person: its transcript and the model's answer."""

    transcript_id: uuid.UUID = Field(description="callx's id of the call.")
    text: str = Field(description="The transcript.")
    extraction: ExtractionRead = Field(
        description="The model's answer; its `review` says why the call is in the queue."
    )
    label_version: int = Field(
        description="Its current label version (0: none): send it as `version` with the label."
    )


class ReviewPage(BaseModel):
    """Calls waiting for review, lowest confidence first (failed calls before all)."""

    items: list[ReviewItem] = Field(description="The calls of this page.")
    next_cursor: str | None = Field(
        description="Pass it back as `cursor` for the next page (null: this is the last)."
    )


class Proportion(BaseModel):
    """A share of calls, with its 95% Wilson interval."""

    n: int = Field(description="Calls counted.")
    right: int = Field(description="Of them, the model's answer equal to the person's.")
    accuracy: float | None = Field(description="right / n (null: n is 0).")
    ci95: tuple[float, float] = Field(description="95% Wilson interval ([0, 1] when n is 0).")


class QualityFigures(BaseModel):
    """The model's answers against people's, on one set of labelled calls."""

    reason: Proportion = Field(description="Reason accuracy.")
    product: Proportion = Field(description="Product match, by `callx eval`'s lenient rule.")
    by_reason: dict[str, Proportion] = Field(
        description="Per reason the person chose: how often the model found it (recall)."
    )


class ModelQuality(QualityFigures):
    """Audit-sample accuracy of one model (adapter included) on one taxonomy version."""

    model: str = Field(description="The model (and adapter) that answered.")
    taxonomy_version: str = Field(description="The taxonomy version it answered with.")


class AutoAccepted(BaseModel):
    """Calls the model's answer was accepted for without a person (at the threshold)."""

    calls: int = Field(description="Calls extracted in the range with a review decision.")
    accepted: int = Field(
        description="Of them, accepted on the model's confidence (not failed, not below it, "
        "calibrated): the calls a person need not see. The audit sample's and the explored "
        "ones among them are seen anyway."
    )
    explored: int = Field(
        description="Of the accepted, drawn at random for people to label "
        "(CALLX_REVIEW__EXPLORE_RATE).",
    )
    share: float | None = Field(description="accepted / calls (null: no calls).")
    accuracy: Proportion = Field(
        description="Reason accuracy of the auto-accepted calls of the reviewed audit sample."
    )


class QualityReport(BaseModel):
    """Production accuracy: the model's answers against people's on the audit sample (drawn
    at random, so unbiased), per model and taxonomy version; the auto-accepted share; and,
    apart, the agreement on low-confidence calls people reviewed (biased: hard calls)."""

    audit_calls: int = Field(description="Calls in the audit sample in the range.")
    audit_reviewed: int = Field(description="Of them, labelled by a person.")
    audit: QualityFigures = Field(description="On the reviewed audit sample: unbiased.")
    by_model: list[ModelQuality] = Field(description="The same per model and taxonomy version.")
    auto_accepted: AutoAccepted = Field(description="Calls accepted without a person.")
    low_confidence_reviewed: QualityFigures = Field(
        description="BIASED: agreement on calls reviewed because the model was unsure or "
        "failed (not in the audit sample, not drawn for exploration, not sent for a product the "
        "call never says). Hard calls: lower than the model's accuracy."
    )


class QualityQuery(BaseModel):
    """What /v1/quality was asked (echoed)."""

    since: UtcDatetime | None = Field(default=None, description="Calls from this time.")
    until: UtcDatetime | None = Field(default=None, description="Calls before this time.")
    model: str | None = Field(default=None, description="Only this model's answers.")
    taxonomy_version: str | None = Field(default=None, description="Only this taxonomy's.")
    source: str | None = Field(default=None, description="Only the calls of this source.")


class QualityAnswer(QualityReport):
    """Production accuracy, with the query it answers."""

    query: QualityQuery = Field(description="What was asked.")
