"""POST /v1/batches (JSON array, NDJSON or CSV) and GET /v1/batches/{id} (progress)."""

from __future__ import annotations

import json
import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response, status
from fastapi.concurrency import run_in_threadpool

from app.api.deps import AUTH_RESPONSES, IngestKey, ReadKey, SessionDep
from app.ingest.service import batch_progress, ingest_batch_body
from schemas.api import BatchCreated, BatchRead, Problem

router = APIRouter(prefix="/v1/batches", tags=["batches"])

_ITEM_SCHEMA = {"$ref": "#/components/schemas/TranscriptCreate"}
_BATCH_RECORDS = [
    {
        "external_id": "call-1001",
        "source": "crm",
        "language": "fr",
        "occurred_at": "2026-11-29T10:12:00Z",
        "text": "Agent: Bonjour.\nClient: Je voudrais résilier mon abonnement mobile.",
    },
    {
        "external_id": "call-1002",
        "source": "crm",
        "language": "en",
        "metadata": {"queue": "billing"},
        "text": "Agent: Hello.\nCustomer: My invoice shows the same charge twice.",
    },
]
_BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "array", "items": _ITEM_SCHEMA},
                "example": _BATCH_RECORDS,
            },
            "application/x-ndjson": {
                "schema": {"type": "string", "description": "One TranscriptCreate JSON per line."},
                "example": "".join(json.dumps(r) + "\n" for r in _BATCH_RECORDS),
            },
            "text/csv": {
                "schema": {
                    "type": "string",
                    "description": "Header with a `text` column; optional external_id, source, "
                    "language, occurred_at; other columns go into metadata.",
                },
                "example": "external_id,source,language,queue,text\n"
                'call-1003,crm,fr,sav,"Agent: Bonjour.\nClient: Ma box ne s\'allume plus."\n',
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
        413: {"model": Problem, "description": "Body over its limit, or too many records."},
        422: {"model": BatchCreated | Problem, "description": "No record could be accepted."},
    },
)
async def create_batch(request: Request, response: Response) -> BatchCreated:
    """Queue many transcripts (the `batch` queue). Each record is validated on its own: the good
    ones are stored in one transaction, the bad ones listed with their position and problem."""
    state = request.app.state
    body = await request.body()  # at most CALLX_API__MAX_BODY_BYTES (BodyLimitMiddleware)
    result = await run_in_threadpool(
        ingest_batch_body,
        body,
        request.headers.get("content-type", "application/json"),
        state.sessions,
        state.queue,
        max_items=state.settings.api.max_batch_items,
        max_text_chars=state.settings.api.max_text_chars,
        taxonomy_version=state.taxonomy.version,
        max_metadata_bytes=state.settings.api.max_metadata_bytes,
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
def get_batch(
    batch_id: Annotated[uuid.UUID, Path(description="The id POST /v1/batches answered.")],
    session: SessionDep,
) -> BatchRead:
    """Progress: transcripts of this batch per status."""
    return batch_progress(session, batch_id)
