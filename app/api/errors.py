"""Every error answer, mapped in one place: {"detail": "...", "errors": [...]}."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.errors import ConflictError, InvalidRequestError, NotFoundError, PayloadTooLargeError
from app.ingest.parsing import BodyError

log = logging.getLogger(__name__)


def problem(status: int, detail: str, errors: list[dict] | None = None) -> JSONResponse:
    body: dict = {"detail": detail}
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(status_code=status, content=body)


def _validation_errors(exc: RequestValidationError) -> list[dict]:
    errors = []
    for error in exc.errors():
        errors.append(
            {
                "loc": [str(part) for part in error.get("loc", ())],
                "msg": str(error.get("msg", "")),
                "type": str(error.get("type", "")),
            }
        )
    return errors


def register_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _validation_errors(exc)
        where = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors[:5])
        return problem(422, f"invalid request: {where}", errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = problem(exc.status_code, str(exc.detail))
        response.headers.update(getattr(exc, "headers", None) or {})
        return response

    @app.exception_handler(NotFoundError)
    async def _not_found(_: Request, exc: NotFoundError) -> JSONResponse:
        return problem(404, str(exc))

    @app.exception_handler(ConflictError)
    async def _conflict(_: Request, exc: ConflictError) -> JSONResponse:
        return problem(409, str(exc))

    @app.exception_handler(InvalidRequestError)
    async def _invalid_value(_: Request, exc: InvalidRequestError) -> JSONResponse:
        return problem(422, str(exc))

    @app.exception_handler(BodyError)
    async def _body(_: Request, exc: BodyError) -> JSONResponse:
        return problem(422, str(exc))

    @app.exception_handler(PayloadTooLargeError)
    async def _too_large(_: Request, exc: PayloadTooLargeError) -> JSONResponse:
        return problem(413, str(exc))

    async def _database(_: Request, exc: Exception) -> JSONResponse:
        # Only the class: driver messages can quote statement parameters (transcript text).
        log.error("database unavailable", extra={"error": type(exc).__name__})
        return problem(503, "the database is unavailable; retry later")

    for error_class in (OperationalError, InterfaceError, PoolTimeoutError):
        app.add_exception_handler(error_class, _database)
