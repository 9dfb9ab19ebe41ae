"""The keyset cursor of the extraction list: an opaque token for (occurred_at, extraction id)."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime

from app.errors import InvalidRequestError


def encode_cursor(occurred_at: datetime, extraction_id: uuid.UUID) -> str:
    raw = f"{occurred_at.isoformat()}|{extraction_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The position a cursor stands for; InvalidRequestError if it is not one of ours."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        occurred_at, extraction_id = base64.urlsafe_b64decode(padded).decode().split("|")
        return datetime.fromisoformat(occurred_at), uuid.UUID(extraction_id)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequestError(
            "invalid cursor: pass back the next_cursor of a page", loc=("query", "cursor")
        ) from exc
