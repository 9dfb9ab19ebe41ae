"""GET /v1/models (the registry); POST /v1/models (register an uploaded adapter),
/v1/models/{id}/promote and /v1/models/rollback (admin). Evaluating runs the model for
minutes: `callx models evaluate` on a machine with the model."""

from __future__ import annotations

from pathlib import PurePath
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, File, Form, Path, UploadFile

from app.api.deps import AUTH_RESPONSES, Caller, ReadKey, SessionDep, SettingsDep, require_scope
from app.registry import service as registry
from schemas.api import Problem
from schemas.models import (
    AdapterList,
    AdapterRead,
    EvaluationRead,
    PromoteRequest,
    PromotionRead,
    RollbackRequest,
)

router = APIRouter(prefix="/v1/models", tags=["models"])
AdminDep = Annotated[Caller | None, Depends(require_scope("admin"))]
RESPONSES: dict[int | str, dict[str, Any]] = {**AUTH_RESPONSES, 422: {"model": Problem}}
# The routes with a body: it may not be readable.
BODY_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "The body could not be read (not UTF-8)."}
}


def _by(caller: Caller | None) -> str:
    return "api:local" if caller is None else f"api:{caller.name or caller.key_id}"


@router.get("", response_model=AdapterList, dependencies=[ReadKey], responses=RESPONSES)
def list_models(session: SessionDep, settings: SettingsDep) -> AdapterList:
    """Every registered adapter, the promoted one marked, each with its latest evaluation
    against the promoted adapter."""
    return AdapterList(items=[_read(item) for item in registry.list_adapters(session, settings)])


def _read(item: registry.AdapterListing) -> AdapterRead:
    return AdapterRead(
        id=item.adapter.id,
        name=item.adapter.name,
        sha256=item.adapter.sha256,
        file_name=item.adapter.file_name,
        size_bytes=item.adapter.size_bytes,
        base_model=item.adapter.base_model,
        registered_by=item.adapter.registered_by,
        registered_at=item.adapter.registered_at,
        promoted=item.promoted,
        promoted_for=list(item.promoted_for),
        evaluation=None
        if item.evaluation is None
        else EvaluationRead.model_validate(item.evaluation, from_attributes=True),
    )


@router.post(
    "",
    response_model=AdapterRead,
    status_code=201,
    responses={
        **RESPONSES,
        400: {"model": Problem, "description": "The body is not valid multipart form data."},
        409: {"model": Problem, "description": "The file or the name is registered already."},
        413: {"model": Problem, "description": "Over the API's body limit (64 MiB by default)."},
    },
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "encoding": {
                        "file": {"contentType": "application/octet-stream"},
                        "card": {"contentType": "application/json"},
                    },
                    # curl -F file=@shop-v3.gguf -F card=@shop-v3.json -F name=shop-v3
                    "example": {"name": "shop-v3"},
                }
            }
        }
    },
)
def register(
    session: SessionDep,
    settings: SettingsDep,
    caller: AdminDep,
    file: Annotated[UploadFile, File(description="The LoRA adapter, a GGUF file.")],
    card: Annotated[
        UploadFile | None,
        File(description="Its card, the .json `callx finetune` writes beside it (optional)."),
    ] = None,
    name: Annotated[
        str | None,
        Form(max_length=100, description="A unique name (default: the file's name)."),
    ] = None,
) -> AdapterRead:
    """Register an adapter: stored with its card in the models directory, by its SHA-256,
    then evaluated and promoted like any other (`callx models register` does the same from a
    file)."""
    chosen = name or PurePath(file.filename or "adapter.gguf").stem
    adapter = registry.register_upload(
        session,
        settings,
        file.file,
        None if card is None else card.file.read(registry.MAX_CARD_BYTES + 1),
        chosen,
        _by(caller),
    )
    return _read(registry.AdapterListing(adapter=adapter, promoted=False, evaluation=None))


@router.post(
    "/{adapter_id}/promote",
    response_model=PromotionRead,
    responses={
        **RESPONSES,
        **BODY_RESPONSES,
        404: {"model": Problem, "description": "No such adapter."},
        409: {
            "model": Problem,
            "description": "The gate refuses it (never evaluated against the promoted one, "
            "or worse, by how much), or it is promoted already.",
        },
    },
)
def promote(
    adapter_id: Annotated[int, Path(ge=1, le=2**31 - 1, description="The adapter's id.")],
    session: SessionDep,
    settings: SettingsDep,
    caller: AdminDep,
    request: Annotated[
        PromoteRequest | None,
        Body(
            openapi_examples={
                "gate": {"summary": "Through the gate", "value": {"note": "March labels"}},
                "forced": {
                    "summary": "Past a refusal (recorded)",
                    "value": {"force": True, "note": "hotfix for the new price plan"},
                },
                "list": {
                    "summary": "For one list's workers only",
                    "value": {"for_taxonomy": "moving-2026-12", "note": "movers, round 3"},
                },
            }
        ),
    ] = None,
) -> PromotionRead:
    """Make the adapter the one workers run (they switch between calls), if its latest
    evaluation against the promoted adapter passed the gate; `force` overrides, recorded."""
    request = request or PromoteRequest()
    row = registry.promote(
        session,
        settings,
        adapter_id,
        _by(caller),
        force=request.force,
        note=request.note,
        for_taxonomy=request.for_taxonomy,
    )
    return PromotionRead.model_validate(row, from_attributes=True)


@router.post(
    "/rollback",
    response_model=PromotionRead,
    responses={
        **RESPONSES,
        **BODY_RESPONSES,
        409: {"model": Problem, "description": "Nothing to roll back to."},
    },
)
def rollback(
    session: SessionDep,
    settings: SettingsDep,
    caller: AdminDep,
    request: Annotated[
        RollbackRequest | None,
        Body(
            openapi_examples={
                "registry": {"summary": "The registry's promotion", "value": {}},
                "list": {
                    "summary": "One list's own promotion",
                    "value": {"for_taxonomy": "moving-2026-12"},
                },
            }
        ),
    ] = None,
) -> PromotionRead:
    """Promote again the adapter promoted before the current one (for one list: along its own
    promotions, then back to the registry's promoted adapter)."""
    request = request or RollbackRequest()
    row = registry.rollback(session, settings, _by(caller), request.for_taxonomy)
    return PromotionRead.model_validate(row, from_attributes=True)
