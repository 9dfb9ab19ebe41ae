"""GET /v1/extractions: current results, filtered, keyset-paginated."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from app.api.deps import AUTH_RESPONSES, ReadKey, SessionDep, SettingsDep
from app.api.views import extraction_read
from app.db import repositories as repo
from schemas.api import (
    NO_CONTROL_CHARS,
    ExtractionListItem,
    ExtractionPage,
    Problem,
    UtcDatetime,
)
from schemas.extraction import product_key

router = APIRouter(prefix="/v1/extractions", tags=["results"])


def encode_cursor(occurred_at: datetime, extraction_id: uuid.UUID) -> str:
    raw = f"{occurred_at.isoformat()}|{extraction_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        occurred_at, extraction_id = base64.urlsafe_b64decode(padded).decode().split("|")
        return datetime.fromisoformat(occurred_at), uuid.UUID(extraction_id)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HTTPException(422, "invalid cursor: pass back the next_cursor of a page") from exc


@router.get(
    "",
    response_model=ExtractionPage,
    dependencies=[ReadKey],
    responses={**AUTH_RESPONSES, 422: {"model": Problem}},
)
def list_extractions(
    session: SessionDep,
    settings: SettingsDep,
    reason: Annotated[str | None, Query(max_length=40, pattern=NO_CONTROL_CHARS)] = None,
    product: Annotated[
        str | None,
        Query(
            max_length=200,
            pattern=NO_CONTROL_CHARS,
            description="Case- and accent-insensitive exact match.",
        ),
    ] = None,
    since: Annotated[UtcDatetime | None, Query(description="Calls at or after (ISO 8601).")] = None,
    until: Annotated[UtcDatetime | None, Query(description="Calls before (ISO 8601).")] = None,
    limit: Annotated[int | None, Query(ge=1)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> ExtractionPage:
    """Current extractions, newest call first. Pass `next_cursor` back as `cursor` for more."""
    page_size = limit or settings.api.default_page_size
    if page_size > settings.api.max_page_size:
        raise HTTPException(
            422, f"limit {page_size} is over the maximum page size {settings.api.max_page_size}"
        )
    filters = repo.ExtractionFilter(
        reason=reason, product=product_key(product), since=since, until=until
    )
    after = decode_cursor(cursor) if cursor else None
    rows = repo.list_extractions(session, filters, page_size + 1, after)
    items = [
        ExtractionListItem(
            transcript_id=t.id,
            external_id=t.external_id,
            source=t.source,
            occurred_at=e.occurred_at,
            extraction=extraction_read(e),  # type: ignore[arg-type]
        )
        for e, t in rows[:page_size]
    ]
    next_cursor = None
    if len(rows) > page_size:
        last = rows[page_size - 1][0]
        next_cursor = encode_cursor(last.occurred_at, last.id)
    return ExtractionPage(items=items, next_cursor=next_cursor)
