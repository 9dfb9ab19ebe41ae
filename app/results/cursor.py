"""The keyset cursors, opaque tokens: the extraction list's for (occurred_at, extraction id),
the review queue's for (review_priority, extraction id)."""

from __future__ import annotations

import base64
import struct
import uuid
from datetime import datetime

from app.errors import InvalidRequestError


def encode_cursor(occurred_at: datetime, extraction_id: uuid.UUID) -> str:
    raw = f"{occurred_at.isoformat()}|{extraction_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The position a cursor stands for; InvalidRequestError if it is not one of ours."""
    try:
        occurred_at, extraction_id = _unpadded(cursor).decode().split("|")
        return datetime.fromisoformat(occurred_at), uuid.UUID(extraction_id)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _invalid() from exc


def encode_queue_cursor(priority: float, extraction_id: uuid.UUID) -> str:
    raw = struct.pack(">d", priority) + extraction_id.bytes
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_queue_cursor(cursor: str) -> tuple[float, uuid.UUID]:
    try:
        raw = _unpadded(cursor)
        if len(raw) != 24:
            raise ValueError(len(raw))
        return struct.unpack(">d", raw[:8])[0], uuid.UUID(bytes=raw[8:])
    except ValueError as exc:
        raise _invalid() from exc


def _unpadded(cursor: str) -> bytes:
    return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))


def _invalid() -> InvalidRequestError:
    return InvalidRequestError(
        "invalid cursor: pass back the next_cursor of a page", loc=("query", "cursor")
    )
