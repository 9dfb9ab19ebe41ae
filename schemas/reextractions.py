"""Re-extraction jobs as the API shows them: /v1/reextractions."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field

from schemas.api import NO_CONTROL_CHARS, SourceName, UtcDatetime


class ReextractionCreate(BaseModel):
    """Which stored calls to extract again (absent: any), with the model the workers run now
    and the API's taxonomy."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"since": "2026-11-01T00:00:00Z", "max_confidence": 0.9, "limit": 5000}]
        },
    )

    since: UtcDatetime | None = Field(default=None, description="Calls at or after this time.")
    until: UtcDatetime | None = Field(default=None, description="Calls before this time.")
    source: SourceName | None = Field(
        default=None,
        max_length=100,
        pattern=NO_CONTROL_CHARS,
        description="Only the calls of this source.",
    )
    reason: str | None = Field(
        default=None,
        max_length=40,
        description="The answer's reason code (the label's, else the model's).",
    )
    model: str | None = Field(
        default=None, max_length=200, description="Only the calls this model answered."
    )
    taxonomy_version: str | None = Field(
        default=None, max_length=64, description="Only the calls extracted with this taxonomy."
    )
    max_confidence: float | None = Field(
        default=None, ge=0, le=1, description="Only the calls at most this sure (the unsure ones)."
    )
    limit: int = Field(
        default=10_000, ge=1, le=1_000_000, description="At most this many, the newest first."
    )


class ReextractionRead(BaseModel):
    """A re-extraction job and its progress."""

    id: uuid.UUID = Field(description="The job's id.")
    created: bool = Field(
        description="False: the same job (same filter, taxonomy and model) was already there: "
        "nothing new is extracted."
    )
    filters: dict[str, object] = Field(description="The filter it was made with.")
    taxonomy_version: str = Field(description="The taxonomy the calls are extracted with.")
    model: str | None = Field(
        description="The model the workers ran when it was made (the promoted adapter's sha256, "
        "for the local backend; `SHA+reader:SHA` where they read the list's definitions with a "
        "reader)."
    )
    calls: int = Field(description="Calls chosen.")
    done: int = Field(description="Of them, extracted again since the job began.")
    queued: int = Field(description="Of them, waiting for a worker.")
    running: int = Field(description="Of them, with a worker now.")
    finished: bool = Field(description="Nothing of the job is queued or running any more.")
    created_by: str = Field(description="Who made it (cli, api:KEY).")
    created_at: UtcDatetime = Field(description="When.")
