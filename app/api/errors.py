"""Every error answer, mapped in one place: {"detail": "...", "errors": [...]}."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
    RequestError,
)
from app.ingest.parsing import BodyError

log = logging.getLogger(__name__)

# An HTTPException's status: the kind of problem and where it is, for its `errors` item.
_HTTP_PROBLEMS: dict[int, tuple[str, tuple[str, ...]]] = {
    400: ("unreadable_body", ("body",)),
    401: ("unauthorized", ("header", "X-API-Key")),
    403: ("forbidden", ("header", "X-API-Key")),
    404: ("not_found", ("path",)),
    405: ("method_not_allowed", ()),
    413: ("too_large", ("body",)),
}


def problem(
    status: int,
    detail: str,
    errors: list[dict] | None = None,
    *,
    kind: str = "invalid",
    loc: tuple[str, ...] = (),
) -> JSONResponse:
    """The error answer: `detail`, and `errors` (one item from `kind` and `loc` if not given)."""
    if errors is None:
        errors = [{"loc": list(loc), "msg": detail, "type": kind}]
    return JSONResponse(status_code=status, content={"detail": detail, "errors": errors})


class RequestTooLargeError(StarletteHTTPException):
    """A request body over CALLX_API__MAX_BODY_BYTES (413). An HTTPException so that FastAPI,
    reading a body for a route, passes it on instead of answering 400."""

    def __init__(self, detail: str) -> None:
        super().__init__(413, detail)


def http_problem(exc: StarletteHTTPException) -> JSONResponse:
    kind, loc = _HTTP_PROBLEMS.get(exc.status_code, ("http_error", ()))
    detail = str(exc.detail)
    if isinstance(exc.__cause__, UnicodeDecodeError):  # FastAPI's "error parsing the body"
        detail = f"the body is not valid UTF-8 (byte {exc.__cause__.start})"
    response = problem(exc.status_code, detail, kind=kind, loc=loc)
    response.headers.update(getattr(exc, "headers", None) or {})
    return response


def _domain_problem(status: int, kind: str, exc: RequestError) -> JSONResponse:
    return problem(status, str(exc), kind=kind, loc=exc.loc)


def _message(error: dict, content_type: str) -> tuple[list[str], str]:
    """Where and what, said for a person: pydantic's "Value error, " prefix dropped, the
    character of a JSON syntax error named as one, a body that is not JSON said so."""
    loc = [str(part) for part in error.get("loc", ())]
    msg = str(error.get("msg", "")).removeprefix("Value error, ")
    kind = error.get("type")
    sent = content_type.split(";")[0].strip()
    if kind == "json_invalid" and len(loc) == 2 and loc[0] == "body" and loc[1].isdigit():
        reason = (error.get("ctx") or {}).get("error")
        where = f"invalid JSON at character {int(loc[1]) + 1}"  # counted from 1
        return ["body"], where + (f" ({reason})" if reason else "")
    is_json = sent == "application/json" or sent.endswith("+json")  # FastAPI's rule
    if kind == "model_attributes_type" and loc == ["body"] and not is_json:
        said = f"not {sent}" if sent else "and the request has no Content-Type"
        return loc, f"the body must be a JSON object sent as application/json, {said}"
    return loc, msg


def _validation_errors(exc: RequestValidationError, content_type: str = "") -> list[dict]:
    errors = []
    for error in exc.errors():
        loc, msg = _message(error, content_type.lower())
        errors.append({"loc": loc, "msg": msg, "type": str(error.get("type", ""))})
    return errors


# The console's pages (app/web) answer their errors as a page: it sets this app.state
# attribute to a function (request, status, message) -> Response for paths under /ui.
PAGE_ERRORS = "render_page_error"
PAGES_PREFIX = "/ui"


def _page_error(request: Request, status: int, detail: str) -> Response | None:
    render = getattr(request.app.state, PAGE_ERRORS, None)
    if render is None or not request.url.path.startswith(PAGES_PREFIX):
        return None
    return render(request, status, detail)  # type: ignore[no-any-return]


def register_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = _validation_errors(exc, request.headers.get("content-type", ""))
        where = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors[:5])
        return _page_error(request, 422, where) or problem(422, f"invalid request: {where}", errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        return _page_error(request, exc.status_code, str(exc.detail)) or http_problem(exc)

    @app.exception_handler(NotFoundError)
    async def _not_found(request: Request, exc: NotFoundError) -> Response:
        return _page_error(request, 404, str(exc)) or _domain_problem(404, "not_found", exc)

    @app.exception_handler(ConflictError)
    async def _conflict(request: Request, exc: ConflictError) -> Response:
        return _page_error(request, 409, str(exc)) or _domain_problem(409, "conflict", exc)

    @app.exception_handler(InvalidRequestError)
    async def _invalid_value(request: Request, exc: InvalidRequestError) -> Response:
        return _page_error(request, 422, str(exc)) or _domain_problem(422, "invalid", exc)

    @app.exception_handler(BodyError)
    async def _body(_: Request, exc: BodyError) -> JSONResponse:
        return problem(422, str(exc), kind="unreadable_body", loc=("body",))

    @app.exception_handler(PayloadTooLargeError)
    async def _too_large(_: Request, exc: PayloadTooLargeError) -> JSONResponse:
        return _domain_problem(413, "too_large", exc)

    async def _database(_: Request, exc: Exception) -> JSONResponse:
        # Only the class: driver messages can quote statement parameters (transcript text).
        log.error("database unavailable", extra={"error": type(exc).__name__})
        return problem(503, "the database is unavailable; retry later", kind="unavailable")

    for error_class in (OperationalError, InterfaceError, PoolTimeoutError):
        app.add_exception_handler(error_class, _database)
