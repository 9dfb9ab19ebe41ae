"""The REST API's request and response bodies."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    field_validator,
)

Status = Literal["queued", "running", "succeeded", "failed"]
Bucket = Literal["day", "week", "month"]

# Query-string filters and lookups: PostgreSQL text cannot hold NUL (it was a 500), and no
# external_id, source or reason code callx stores has a control character.
NO_CONTROL_CHARS = r"^[^\x00-\x1f\x7f]*$"

# Control characters other than tab, newline and carriage return have no place in a transcript.
_FORBIDDEN_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _as_utc(value: datetime) -> datetime:
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError as exc:  # 0001-01-01T00:00+01:00 is before year 1 in UTC
        raise ValueError("datetime out of range once converted to UTC") from exc


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]


def _clean_text(value: str) -> str:
    bad = _FORBIDDEN_CHARS.search(value)
    if bad is not None:
        raise ValueError(f"text contains a control character (U+{ord(bad.group()):04X})")
    if not value.strip():
        raise ValueError("text is empty")
    return value


class TranscriptCreate(BaseModel):
    """One call transcript to extract."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    text: Annotated[str, AfterValidator(_clean_text)] = Field(
        min_length=1, description="The transcript, any format (turns on lines is typical)."
    )
    external_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="The call-centre system's id; (source, external_id) is unique.",
    )
    source: str = Field(
        default="default", min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$"
    )
    language: str | None = Field(default=None, pattern=r"^[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,8})?$")
    occurred_at: UtcDatetime | None = Field(
        default=None, description="When the call happened (ISO 8601); default: when received."
    )
    metadata: dict[str, JsonValue] = Field(default_factory=dict)

    @field_validator("metadata")
    @classmethod
    def _metadata_small(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(value) > 50:
            raise ValueError("metadata has more than 50 keys")
        return value


class ExtractionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    status: Literal["succeeded", "failed"]
    product: str | None
    reason: str | None
    confidence: float | None = None
    backend: str
    model: str
    prompt_version: str
    taxonomy_version: str
    latency_ms: int | None
    prompt_tokens: int | None
    completion_tokens: int | None
    attempts: int
    truncated: bool
    error: str | None = None
    error_kind: str | None = None
    created_at: UtcDatetime


class TranscriptRead(BaseModel):
    id: uuid.UUID
    external_id: str | None
    source: str
    status: Status
    language: str | None = None
    occurred_at: UtcDatetime
    batch_id: uuid.UUID | None = None
    extraction: ExtractionRead | None = None


class BatchItemError(BaseModel):
    index: int = Field(description="0-based position of the record in the request.")
    line: int | None = Field(default=None, description="1-based line, for NDJSON and CSV.")
    external_id: str | None = None
    errors: list[str]


class BatchCreated(BaseModel):
    id: uuid.UUID | None = Field(description="null when no record was accepted.")
    received: int
    accepted: int
    duplicates: int = Field(
        description="Records already known with the same text: not queued again."
    )
    rejected: int
    errors: list[BatchItemError]


class BatchRead(BaseModel):
    id: uuid.UUID
    created_at: UtcDatetime
    received: int
    accepted: int
    duplicates: int
    rejected: int
    counts: dict[Status, int]
    done: bool


class ExtractionListItem(BaseModel):
    transcript_id: uuid.UUID
    external_id: str | None
    source: str
    occurred_at: UtcDatetime
    extraction: ExtractionRead


class ExtractionPage(BaseModel):
    items: list[ExtractionListItem]
    next_cursor: str | None


class ReasonBucket(BaseModel):
    bucket: UtcDatetime
    reason: str
    count: int


class ReasonCounts(BaseModel):
    bucket: Bucket
    items: list[ReasonBucket]


class ProductCount(BaseModel):
    product: str
    total: int
    by_reason: dict[str, int]


class ProductCounts(BaseModel):
    items: list[ProductCount]


class Problem(BaseModel):
    """Every error answer."""

    detail: str
    errors: list[dict[str, Any]] | None = None


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = {}
