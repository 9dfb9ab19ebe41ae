"""POST /v1/batches (JSON array, NDJSON or CSV) and GET /v1/batches/{id} (progress)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response, status
from fastapi.concurrency import run_in_threadpool

from app.api.body import read_limited_body
from app.api.deps import AUTH_RESPONSES, IngestKey, ReadKey, SessionDep
from app.ingest.service import batch_progress, ingest_batch_body
from schemas.api import BatchCreated, BatchRead, Problem

router = APIRouter(prefix="/v1/batches", tags=["batches"])

_ITEM_SCHEMA = {"$ref": "#/components/schemas/TranscriptCreate"}
_BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"type": "array", "items": _ITEM_SCHEMA}},
            "application/x-ndjson": {
                "schema": {"type": "string", "description": "One TranscriptCreate JSON per line."}
            },
            "text/csv": {
                "schema": {
                    "type": "string",
                    "description": "Header with a `text` column; optional external_id, source, "
                    "language, occurred_at; other columns go into metadata.",
                }
            },
        },
    }
}


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BatchCreated,
    openapi_extra=_BATCH_BODY,
    dependencies=[IngestKey],
    responses={
        **AUTH_RESPONSES,
        200: {"model": BatchCreated, "description": "Nothing new: every record was a duplicate."},
        413: {"model": Problem},
        422: {"model": BatchCreated | Problem, "description": "No record could be accepted."},
    },
)
async def create_batch(request: Request, response: Response) -> BatchCreated:
    """Queue many transcripts (the `batch` queue). Each record is validated on its own: the good
    ones are stored in one transaction, the bad ones listed with their position and problem."""
    state = request.app.state
    body = await read_limited_body(request, state.settings.api.max_body_bytes)
    result = await run_in_threadpool(
        ingest_batch_body,
        body,
        request.headers.get("content-type", "application/json"),
        state.sessions,
        state.queue,
        max_items=state.settings.api.max_batch_items,
        max_text_chars=state.settings.api.max_text_chars,
    )
    if result.accepted == 0:
        response.status_code = 422 if result.rejected else status.HTTP_200_OK
    return result


@router.get(
    "/{batch_id}",
    response_model=BatchRead,
    dependencies=[ReadKey],
    responses={**AUTH_RESPONSES, 404: {"model": Problem}, 422: {"model": Problem}},
)
def get_batch(batch_id: uuid.UUID, session: SessionDep) -> BatchRead:
    """Progress: transcripts of this batch per status."""
    return batch_progress(session, batch_id)
