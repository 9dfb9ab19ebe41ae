"""Request dependencies: the session (committed once, at the end of the route), settings, queue,
and the API key each /v1 route needs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Query, Request, Security
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from app.auth.keys import Scope, scope_allows
from app.auth.service import authenticate
from app.config import Settings
from app.db.session import session_scope
from app.errors import InvalidRequestError
from app.jobs.queue import TaskQueue
from schemas.api import NO_CONTROL_CHARS, Problem, SourceName, UtcDatetime
from schemas.taxonomy import Reason, Taxonomy


def get_session(request: Request) -> Iterator[Session]:
    with session_scope(request.app.state.sessions) as session:
        yield session


def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def get_queue(request: Request) -> TaskQueue:
    return request.app.state.queue  # type: ignore[no-any-return]


def get_taxonomy(request: Request) -> Taxonomy:
    """The taxonomy this API queues calls for (loaded once, in create_app)."""
    return request.app.state.taxonomy  # type: ignore[no-any-return]


# scope="function": commit (and send the after-commit jobs) before the response goes out,
# so a 202 always means stored, and a failed commit is an error answer, not a lost write.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings)]
QueueDep = Annotated[TaskQueue, Depends(get_queue)]
TaxonomyDep = Annotated[Taxonomy, Depends(get_taxonomy)]


def page_size(default: int | None = None) -> Callable[..., int]:
    """A dependency: the `limit` query parameter, `default` (else the configured default page
    size) when absent, refused over the configured maximum."""

    def get_page_size(
        settings: SettingsDep,
        limit: Annotated[int | None, Query(ge=1, description="Items per page.")] = None,
    ) -> int:
        size = limit or default or settings.api.default_page_size
        if size > settings.api.max_page_size:
            raise InvalidRequestError(
                f"limit {size} is over the maximum page size {settings.api.max_page_size}",
                loc=("query", "limit"),
            )
        return size

    return get_page_size


PageSizeDep = Annotated[int, Depends(page_size())]
# The top-products list: 20 unless asked.
TopSizeDep = Annotated[int, Depends(page_size(default=20))]


def reason_filter(
    taxonomy: TaxonomyDep,
    reason: Annotated[
        str | None,
        # Documented with the taxonomy's codes as an enum (app/api/openapi.py).
        Query(max_length=40, pattern=NO_CONTROL_CHARS, description="A reason code."),
    ] = None,
) -> str | None:
    """The `reason` filter: a code of the configured taxonomy, or a 422 that lists them."""
    if reason is None or reason in taxonomy.codes:
        return reason
    label_of = [r.code for r in taxonomy.reasons if _is_label(reason, r)]
    hint = f" ({reason!r} is the label of {label_of[0]!r})" if label_of else ""
    raise InvalidRequestError(
        f"reason {reason!r} is not a code of the taxonomy {taxonomy.version}{hint}; "
        f"use one of: {', '.join(taxonomy.codes)}",
        loc=("query", "reason"),
    )


def _is_label(value: str, reason: Reason) -> bool:
    labels = [reason.label] if isinstance(reason.label, str) else reason.label.values()
    return value.strip().casefold() in {label.casefold() for label in labels}


ReasonFilterDep = Annotated[str | None, Depends(reason_filter)]
SinceQuery = Annotated[
    UtcDatetime | None,
    Query(
        description="Calls at or after this time (ISO 8601; no offset: UTC). With `until`, "
        "it must be before it (else a 422).",
        examples=["2026-11-01T00:00:00Z"],
    ),
]
UntilQuery = Annotated[
    UtcDatetime | None,
    Query(
        description="Calls before this time (ISO 8601; no offset: UTC). With `since`, it must "
        "be after it (else a 422).",
        examples=["2026-12-01T00:00:00Z"],
    ),
]

SourceQuery = Annotated[
    SourceName | None,
    Query(
        min_length=1,
        max_length=100,
        pattern=NO_CONTROL_CHARS,
        description="Only the calls of this source, normalised as when submitted (`CRM`: `crm`).",
    ),
]
TaxonomyVersionQuery = Annotated[
    str | None,
    Query(
        max_length=64,
        pattern=NO_CONTROL_CHARS,
        description="Only the calls extracted with this taxonomy version (counts of different "
        "taxonomies do not mean the same thing).",
    ),
]


# ---- API keys ------------------------------------------------------------------------------

MISSING_KEY = "missing API key: send it in the X-API-Key header"
INVALID_KEY = "invalid or revoked API key"

_key_header = APIKeyHeader(
    name="X-API-Key",
    scheme_name="ApiKey",
    description="A key from `callx keys create --scope ingest|read|review|admin`. Not needed "
    "when the "
    "server says it runs without API keys (loopback only, by default).",
    auto_error=False,
)
_bearer = HTTPBearer(
    scheme_name="BearerApiKey",
    description="The same key as `Authorization: Bearer <key>`.",
    auto_error=False,
)


@dataclass(frozen=True)
class Caller:
    """Who called: the key's id, name and scope."""

    key_id: str
    name: str | None
    scope: str


def require_scope(scope: Scope) -> Callable[..., Caller | None]:
    """A dependency: the request must carry a live key with `scope` (or admin). None when the
    API runs without keys."""

    def check(
        request: Request,
        header_key: Annotated[str | None, Security(_key_header)],
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    ) -> Caller | None:
        caller = _caller(request, header_key, bearer)
        # After the key: a caller without one learns nothing of the endpoint's parameters.
        refuse_unknown_query_parameters(request)
        return caller

    def _caller(
        request: Request, header_key: str | None, bearer: HTTPAuthorizationCredentials | None
    ) -> Caller | None:
        if not request.app.state.auth_required:
            return None
        presented = header_key or (bearer.credentials if bearer is not None else None)
        if not presented:
            raise HTTPException(401, MISSING_KEY)
        # Its own short transaction: checked (and last_used_at written) before the route runs,
        # and no connection held while a large batch body is read.
        with session_scope(request.app.state.sessions) as session:
            key = authenticate(session, presented, datetime.now(UTC))
            caller = None if key is None else Caller(key.id, key.name, key.scope)
        if caller is None:
            raise HTTPException(401, INVALID_KEY)
        if not scope_allows(caller.scope, scope):
            raise HTTPException(
                403, f"this key has scope {caller.scope!r}; this endpoint needs {scope!r}"
            )
        return caller

    check.__name__ = f"require_{scope}_key"
    return check


# For route decorators: dependencies=[IngestKey] / [ReadKey].
IngestKey = Depends(require_scope("ingest"))
ReadKey = Depends(require_scope("read"))
# The caller, for routes that record who acted (a label's author): None without API keys.
ReviewerDep = Annotated[Caller | None, Depends(require_scope("review"))]
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "Missing, invalid or revoked API key."},
    403: {"model": Problem, "description": "The API key's scope does not allow this endpoint."},
}


def _query_parameters(route: APIRoute) -> frozenset[str]:
    """The query parameters a route takes, its dependencies' included."""
    names: set[str] = set()
    pending = [route.dependant]
    while pending:
        dependant = pending.pop()
        names.update(param.alias for param in dependant.query_params)
        pending.extend(dependant.dependencies)
    return frozenset(names)


def refuse_unknown_query_parameters(request: Request) -> None:
    """A query parameter the endpoint does not take is refused (422), not ignored: a misspelt
    filter (`?reasn=billing`) would otherwise answer with everything. Checked with the API key
    (require_scope), which every /v1 route has."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    taken = _query_parameters(route)
    unknown = sorted(set(request.query_params) - taken)
    if unknown:
        raise InvalidRequestError(
            f"unknown query parameter {', '.join(map(repr, unknown))}; this endpoint takes "
            + (", ".join(sorted(taken)) if taken else "no query parameters"),
            loc=("query", unknown[0]),
        )
