"""A call record's field names: the canonical ones (the API's), the other spelling accepted for
two of them, and the one function that brings a record to the canonical names.

The API (one call, JSON, NDJSON and CSV batches) and the CLI's record files (`callx extract`,
`submit`, `eval`, `finetune`) all read a record through `canonical_record`, so one file works
everywhere: callx's own labelled files (`id`, `transcript`) and the API's (`external_id`, `text`).
"""

from __future__ import annotations

from typing import Any

TEXT = "text"
EXTERNAL_ID = "external_id"
# The other spelling of a field -> its canonical name.
ALIASES = {"transcript": TEXT, "id": EXTERNAL_ID}
# A transcript's own fields (TranscriptCreate); anything else in a record is data about the call.
TRANSCRIPT_FIELDS = (TEXT, EXTERNAL_ID, "source", "language", "occurred_at", "metadata")
# A call's language: a BCP 47 tag of a language and, optionally, a region or script.
LANGUAGE_TAG = r"^[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,8})?$"


class RecordFieldError(ValueError):
    """A record names one field twice, with two different values."""


def canonical_record(record: dict[str, Any]) -> dict[str, Any]:
    """`record` with `transcript` renamed `text` and `id` renamed `external_id`; an integer id
    becomes its decimal string. Both spellings of one field with different values: an error."""
    canonical = dict(record)
    for alias, name in ALIASES.items():
        if alias not in canonical:
            continue
        value = canonical.pop(alias)
        if name in canonical and _same(canonical[name], value, name):
            continue
        if name in canonical:
            raise RecordFieldError(
                f"`{name}` and `{alias}` are two spellings of one field and differ here: keep one"
            )
        canonical[name] = value
    if EXTERNAL_ID in canonical:
        canonical[EXTERNAL_ID] = _id_text(canonical[EXTERNAL_ID])
    return canonical


def _same(value: Any, other: Any, name: str) -> bool:
    if name == EXTERNAL_ID:
        return bool(_id_text(value) == _id_text(other))
    return bool(value == other)


def _id_text(value: Any) -> Any:
    """An id written as a JSON number (`"id": 42`) is the id "42"."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value
