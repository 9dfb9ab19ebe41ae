"""The REST API's request and response bodies."""

from __future__ import annotations

import re
import unicodedata
import uuid
from datetime import UTC, datetime
from difflib import get_close_matches
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    field_validator,
    model_validator,
)

from schemas.records import ALIASES, LANGUAGE_TAG, TRANSCRIPT_FIELDS, canonical_record

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


# "2026-11-29", "2026-11-29T10:12:00Z", "2026-11-29 10:12:00.5+01:00": a date first. Pydantic
# would also take a number (or a string of one) as Unix time: 1e11 became a date in 1973.
_ISO_8601_START = re.compile(r"^\d{4}-\d{2}-\d{2}(?:$|[Tt ])")


def _iso_8601_only(value: object) -> object:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and _ISO_8601_START.match(value):
        return value
    raise ValueError("expected an ISO 8601 date-time string, such as 2026-11-29T10:12:00Z")


# A date-time in: an ISO 8601 string (no offset: UTC); out: UTC.
UtcDatetime = Annotated[datetime, BeforeValidator(_iso_8601_only), AfterValidator(_as_utc)]

# Characters that show nothing (Unicode's Default_Ignorable_Code_Point, which holds the format
# characters: zero-width spaces and joiners, soft hyphen, BOM, bidi marks, variation selectors).
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
    "\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)
# Scripts whose letters look alike (Latin c, Cyrillic с, Greek ϲ): one source name uses one.
_LOOKALIKE_SCRIPTS = ("LATIN", "GREEK", "CYRILLIC")
SOURCE_RULE = (
    "A source is stored and looked up normalised: NFKC, case-folded, without invisible "
    "characters, trimmed; it may not mix Latin, Greek and Cyrillic letters."
)


def normalize_source(value: str) -> str:
    """A source name as stored and looked up (SOURCE_RULE): `CRM`, `ｃｒｍ` and `crm` with a
    zero-width space are all `crm`; `сrm` with a Cyrillic `с` is refused, not a new source."""
    text = _INVISIBLE.sub("", unicodedata.normalize("NFKC", value))
    text = unicodedata.normalize("NFKC", text.casefold()).strip()
    if not text:
        raise ValueError("source is empty once invisible characters and spaces are removed")
    if len(text) > 100:
        raise ValueError(f"source is {len(text)} characters once normalised; at most 100")
    scripts = {
        script
        for char in text
        if char.isalpha()
        and (script := unicodedata.name(char, "").partition(" ")[0]) in _LOOKALIKE_SCRIPTS
    }
    if len(scripts) > 1:
        raise ValueError(
            f"source mixes {' and '.join(sorted(s.title() for s in scripts))} letters "
            "(a look-alike character?)"
        )
    return text


# A source name, normalised (normalize_source), in a body or a query.
SourceName = Annotated[str, AfterValidator(normalize_source)]


def _clean_text(value: str) -> str:
    bad = _FORBIDDEN_CHARS.search(value)
    if bad is not None:
        raise ValueError(f"text contains a control character (U+{ord(bad.group()):04X})")
    if not value.strip():
        raise ValueError("text is empty")
    return value


def _call_data_in_metadata(record: dict[str, Any]) -> dict[str, Any]:
    """The record's fields other than a transcript's own (a labelled file's `reason`,
    `product`, `domain`...) moved into its `metadata`, as a CSV batch's other columns are. A
    near miss of a field's name (`extrenal_id`, `Text`) stays, to be refused where it is."""
    other = {
        key: value
        for key, value in record.items()
        if key not in TRANSCRIPT_FIELDS
        and not get_close_matches(str(key).lower(), _FIELD_NAMES, n=1, cutoff=0.8)
    }
    metadata = record.get("metadata", {})
    if not other or not isinstance(metadata, dict):
        return record  # nothing to move, or metadata is not an object: said by its validation
    both = sorted(set(other) & set(metadata))
    if both:
        raise ValueError(f"{both[0]!r} is both a field of the record and a key of its metadata")
    kept = {key: value for key, value in record.items() if key not in other}
    kept["metadata"] = {**metadata, **other}
    return kept


_FIELD_NAMES = (*TRANSCRIPT_FIELDS, *ALIASES)


# The examples of the OpenAPI document (Swagger UI's "Try it out" sends them as they are).
TRANSCRIPT_EXAMPLE: dict[str, Any] = {
    "external_id": "call-0001",
    "source": "crm",
    "language": "fr",
    "occurred_at": "2026-11-29T10:12:00Z",
    "metadata": {"queue": "sav"},
    "text": "Agent: Bonjour.\nClient: Ma box Livebox 6 ne marche plus depuis ce matin.",
}
TRANSCRIPT_EXAMPLE_EN: dict[str, Any] = {
    "external_id": "call-0002",
    "source": "crm",
    "language": "en",
    "text": "Agent: Hello.\nCustomer: I was charged twice for my mobile plan this month.",
}


class TranscriptCreate(BaseModel):
    """One call transcript to extract.

    `transcript` is accepted for `text` and `id` for `external_id` (an integer id becomes its
    decimal string); the record's other fields (labels such as `reason`, `product`) are kept in
    `metadata`, but for a near miss of a field's name, refused.
    """

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=False,
        json_schema_extra={"examples": [TRANSCRIPT_EXAMPLE]},
    )

    text: Annotated[str, AfterValidator(_clean_text)] = Field(
        min_length=1,
        description="The transcript, any format (turns on lines is typical). Also: `transcript`.",
    )
    external_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="The call-centre system's id; (source, external_id) is unique. Also: `id`.",
    )
    source: SourceName = Field(
        default="default",
        min_length=1,
        max_length=100,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="The system the call comes from; with external_id, the call's key. "
        + SOURCE_RULE,
    )
    language: str | None = Field(
        default=None,
        pattern=LANGUAGE_TAG,
        description="The call's language (a BCP 47 tag: fr, en, fr-CA), if known.",
    )
    occurred_at: UtcDatetime | None = Field(
        default=None,
        description="When the call happened: an ISO 8601 string (no offset: UTC), never a "
        "number; default: when received.",
    )
    metadata: dict[str, JsonValue] = Field(
        default_factory=dict,
        description="Anything to keep with the call (at most 50 keys, and "
        "CALLX_API__MAX_METADATA_BYTES as compact JSON, 16 KiB by default).",
    )

    @model_validator(mode="before")
    @classmethod
    def _canonical(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        return _call_data_in_metadata(canonical_record(data))

    @field_validator("metadata")
    @classmethod
    def _metadata_small(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(value) > 50:
            raise ValueError("metadata has more than 50 keys")
        return value


class ReviewState(BaseModel):
    """Why a call needs a person, decided when its extraction was stored."""

    cause: (
        Literal["failed", "low_confidence", "uncalibrated", "product_not_said", "explore"] | None
    ) = Field(
        description="failed; low_confidence (below the threshold); uncalibrated (a confidence "
        "that is not a calibrated probability, or none); product_not_said (a product with a "
        "word the call never says: CALLX_REVIEW__PRODUCT_NOT_SAID); explore (a sure call drawn "
        "at random for people to label: CALLX_REVIEW__EXPLORE_RATE); null: auto-accepted."
    )
    in_audit: bool = Field(description="Drawn into the audit sample, whatever its confidence.")
    threshold: float | None = Field(description="The threshold it was decided with.")
    audit_rate: float | None = Field(description="The audit rate it was decided with.")
    waiting: bool = Field(description="In the review queue now (needs review, no label yet).")


class MachineAnswer(BaseModel):
    """The model's answer a label replaces: the call's current extraction when it was written."""

    extraction_id: uuid.UUID | None = Field(description="The extraction (null: none).")
    status: str | None = Field(description="succeeded or failed.")
    reason: str | None = Field(description="The model's reason (null: it failed).")
    product: str | None = Field(description="The model's product.")
    confidence: float | None = Field(description="The model's confidence in its reason.")


class LabelRead(BaseModel):
    """A human label, one version of it."""

    transcript_id: uuid.UUID = Field(description="callx's id of the call.")
    version: int = Field(description="1 for the call's first label, then 2, 3...")
    current: bool = Field(description="Whether this is the call's latest label.")
    reason: str = Field(description="The reason code the person chose.")
    product: str | None = Field(description="The product the person gave (null: none).")
    note: str | None = Field(description="The person's note.")
    taxonomy_version: str = Field(description="The taxonomy its reason is of.")
    labelled_by: str = Field(description="The API key's name (its id if it has none).")
    labelled_at: UtcDatetime = Field(description="When it was written.")
    replaces: MachineAnswer = Field(description="The model's answer it replaces.")


class Answer(BaseModel):
    """The answer that counts: the current label's where the call has one, else the model's."""

    reason: str | None = Field(description="null: the model failed and nobody labelled it.")
    product: str | None = Field(description="The product (null: none).")
    by: Literal["model", "label"] | None = Field(description="Whose answer it is.")


class ExtractionRead(BaseModel):
    """A call's extraction: what the model answered, with what, at what cost."""

    model_config = ConfigDict(from_attributes=True)

    status: Literal["succeeded", "failed"] = Field(
        description="succeeded: product and reason hold the answer; failed: error says why."
    )
    product: str | None = Field(
        description="The product or service the call is about, as named in the call (null: "
        "none, or failed)."
    )
    reason: str | None = Field(
        description="A code of the taxonomy taxonomy_version names (null: failed)."
    )
    confidence: float | None = Field(
        default=None,
        description="llamacpp: the probability that the reason is right (0 to 1) where "
        "confidence_calibrated is true, else the model's own normalised probability of it; "
        "null for a backend that gives none.",
    )
    confidence_calibrated: bool = Field(
        default=False,
        description="Whether confidence is calibrated: the model's card holds a calibration "
        "fitted on this taxonomy. False on a taxonomy the model was never measured on: route "
        "such calls by other means than the confidence.",
    )
    product_confidence: float | None = Field(
        default=None,
        description="llamacpp: the model's own probability of its product answer (null, or the "
        "name it gave), not calibrated; null for a backend that gives none.",
    )
    backend: str = Field(description="llamacpp or openai.")
    model: str = Field(description="The model (and LoRA adapter) that answered.")
    adapter_sha256: str | None = Field(
        default=None,
        description="The SHA-256 of the LoRA adapter that answered (the model registry's id of "
        "it; null: no adapter).",
    )
    reader_sha256: str | None = Field(
        default=None,
        description="llamacpp: the SHA-256 of the reader (the adapter trained to read a list's "
        "definitions) they are read with for this call (CALLX_LLAMACPP__READ_DEFINITIONS: by "
        "default, on a list the adapter was not trained on); null where no reader reads them: "
        "definitions not read, read by the base model, or another backend.",
    )
    prompt_version: str = Field(description="The version of callx's prompt.")
    taxonomy_version: str = Field(description="The version of the taxonomy the reason is of.")
    latency_ms: int | None = Field(description="Time spent in the model, in milliseconds.")
    prompt_tokens: int | None = Field(description="Tokens sent to the model.")
    completion_tokens: int | None = Field(description="Tokens the model generated.")
    attempts: int = Field(description="Model calls it took (re-asks after an invalid answer).")
    truncated: bool = Field(
        description="The call was longer than the model's context: its middle was left out."
    )
    error: str | None = Field(default=None, description="Why it failed (null: it did not).")
    error_kind: str | None = Field(
        default=None,
        description="The failure's kind: invalid_answer, backend_error, timeout, connection, "
        "rate_limited, server_error, context_too_small.",
    )
    created_at: UtcDatetime = Field(description="When this extraction was stored.")
    review: ReviewState | None = Field(
        default=None,
        description="Whether the call needs a person, decided when this extraction was stored "
        "(null: stored before callx decided).",
    )


class CallFields(BaseModel):
    """What every read says of a call, besides its id and its extraction."""

    external_id: str | None = Field(description="The call-centre system's id of the call.")
    source: str = Field(description="The system the call came from (normalised).")
    language: str | None = Field(default=None, description="The call's language, as submitted.")
    occurred_at: UtcDatetime = Field(description="When the call happened (UTC).")
    batch_id: uuid.UUID | None = Field(
        default=None, description="The batch it came in (null: submitted on its own)."
    )
    metadata: dict[str, JsonValue] = Field(
        default_factory=dict, description="The call's metadata, as submitted."
    )


class TranscriptRead(CallFields):
    """A call as stored, with its current extraction once there is one."""

    id: uuid.UUID = Field(description="callx's id of the call.")
    status: Status = Field(
        description="queued, running (a worker holds it), succeeded or failed (final)."
    )
    extraction: ExtractionRead | None = Field(
        default=None,
        description="The model's current extraction (null until the call is done).",
    )
    label: LabelRead | None = Field(
        default=None, description="The current human label (null: nobody labelled it)."
    )
    answer: Answer | None = Field(
        default=None,
        description="The answer that counts: the label's, else the model's (null until done).",
    )


class BatchItemError(BaseModel):
    """A record of a batch that was not stored, and why."""

    index: int = Field(description="0-based position of the record in the request.")
    line: int | None = Field(default=None, description="1-based line, for NDJSON and CSV.")
    external_id: str | None = Field(default=None, description="The record's external_id, if any.")
    errors: list[str] = Field(description="Each problem, as `field: what is wrong`.")


class BatchCreated(BaseModel):
    """What a batch request stored: counts, and the records refused with their position."""

    id: uuid.UUID | None = Field(description="null when no record was accepted.")
    received: int = Field(description="Records in the request.")
    accepted: int = Field(description="Records stored and queued.")
    duplicates: int = Field(
        description="Records already known with the same text: not queued again."
    )
    rejected: int = Field(description="Records refused: listed in errors.")
    errors: list[BatchItemError] = Field(description="The refused records, in request order.")
    transcript_ids: list[uuid.UUID | None] = Field(
        default_factory=list,
        description="Per record, in request order: the id of the call stored for it; null for "
        "a rejected record or a duplicate (find that one by its source and external_id).",
    )


class BatchRead(BaseModel):
    """A batch's progress."""

    id: uuid.UUID = Field(description="The batch's id.")
    created_at: UtcDatetime = Field(description="When it was received.")
    received: int = Field(description="Records in the request.")
    accepted: int = Field(description="Records stored and queued.")
    duplicates: int = Field(description="Records already known with the same text.")
    rejected: int = Field(description="Records refused.")
    counts: dict[Status, int] = Field(description="The batch's calls per status, now.")
    done: bool = Field(description="No call of the batch is queued or running any more.")


class ExtractionListItem(CallFields):
    """A call with its current extraction."""

    transcript_id: uuid.UUID = Field(description="callx's id of the call.")
    extraction: ExtractionRead = Field(description="The model's current extraction.")
    label: LabelRead | None = Field(
        default=None, description="The current human label (null: nobody labelled it)."
    )
    answer: Answer = Field(description="The answer that counts: the label's, else the model's.")


class ExtractionPage(BaseModel):
    """One page of extractions, newest call first."""

    items: list[ExtractionListItem] = Field(description="The calls of this page.")
    next_cursor: str | None = Field(
        description="Pass it back as `cursor` for the next page (null: this is the last)."
    )


class ReasonBucket(BaseModel):
    """Calls of one reason in one day, week or month."""

    bucket: UtcDatetime = Field(description="The bucket's start (UTC; a week starts on Monday).")
    reason: str = Field(description="A reason code.")
    count: int = Field(description="Calls in the bucket with this reason.")


class ReasonCounts(BaseModel):
    """Calls per reason over time."""

    bucket: Bucket = Field(description="The bucket size asked for.")
    items: list[ReasonBucket] = Field(description="By bucket, then reason; no zero counts.")


class ProductCount(BaseModel):
    """A product with its calls per reason."""

    product: str = Field(
        description="The product, in one of its spellings (calls are grouped case-, accent- "
        "and whitespace-insensitively)."
    )
    total: int = Field(description="Calls about it.")
    by_reason: dict[str, int] = Field(description="Its calls per reason code.")


class ProductCounts(BaseModel):
    """The most frequent products, most calls first."""

    items: list[ProductCount] = Field(description="Most calls first.")


class ProblemItem(BaseModel):
    """One thing wrong with a request, and where."""

    loc: list[str] = Field(
        description="Where: `body`, `query`, `path` or `header`, then the field (empty: the "
        "request as a whole)."
    )
    msg: str = Field(description="What is wrong.")
    type: str = Field(description="A stable code for the kind of problem.")


class Problem(BaseModel):
    """Every error answer."""

    detail: str = Field(description="What was wrong, in one sentence.")
    errors: list[ProblemItem] = Field(description="Each problem and where it is.")


class WorkerRead(BaseModel):
    """A live worker: it sent a heartbeat within the last three intervals."""

    name: str = Field(description="Celery node name and process id.")
    backend: str = Field(description="llamacpp, openai (or fake, in tests).")
    model: str = Field(description="The model (and adapter) it extracts with.")
    taxonomy_version: str = Field(description="The taxonomy it extracts with.")
    last_seen: UtcDatetime = Field(description="Its last heartbeat.")


class QueueHealth(BaseModel):
    """A queue's live workers and waiting calls."""

    workers: list[WorkerRead] = Field(description="The live workers that consume this queue.")
    waiting: int = Field(description="Calls queued or running in this queue.")
    unserved: dict[str, int] = Field(
        description="Waiting calls that no live worker of this queue can take, by the taxonomy "
        "version they were queued for ('*': queued before callx recorded it, any worker)."
    )


class Health(BaseModel):
    """The service's health: each dependency's check, `ok` or what is wrong."""

    status: Literal["ok", "unavailable"] = Field(description="ok when every check is ok.")
    checks: dict[str, str] = Field(
        default={},
        description="database, broker, and `queue:<name>` per queue (a live worker serves "
        "it, and every call waiting in it): `ok` or what is wrong.",
    )
    queues: dict[str, QueueHealth] | None = Field(
        default=None, description="Per queue: live workers and waiting calls (/readyz)."
    )
