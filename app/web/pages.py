"""The console's pages at /ui: each handler reads its filter, calls the services the REST API
calls, and renders a template. No query here."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode, urlsplit

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from sqlalchemy.orm import Session

from app.auth import sessions as web_sessions
from app.db.session import session_scope
from app.errors import ConflictError, InvalidRequestError, NotFoundError
from app.ingest.service import recent_batches
from app.jobs.models import models_in_use
from app.registry import service as registry
from app.results import service as results
from app.results.cursor import decode_queue_cursor
from app.review import service as review
from app.review.quality import QualityFilter, audit_reason_accuracy, quality_report
from app.web import security
from app.web.charts import bucket_end, stacked_chart
from app.web.filters import BUCKETS, REVIEW_STATES, calls_filter, overview_filter
from app.web.i18n import LANGUAGES, Words, negotiate
from app.web.security import CsrfViewerDep, ViewerDep
from app.web.turns import split_turns
from schemas.review import LabelWrite
from schemas.taxonomy import Taxonomy

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")
CALLS_PAGE = 50
TOP_PRODUCTS = 10
BATCHES_PAGE = 50
CSV_COLUMNS = (
    "transcript_id",
    "external_id",
    "source",
    "language",
    "occurred_at",
    "reason",
    "product",
    "answer_by",
    "model_reason",
    "model_product",
    "confidence",
    "status",
    "review_cause",
    "in_audit",
    "model",
    "taxonomy_version",
)

router = APIRouter(prefix="/ui", include_in_schema=False)
__all__ = ["quote", "render_error", "router", "words"]


def get_session(request: Request) -> Iterator[Session]:
    with session_scope(request.app.state.sessions) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def _taxonomy(request: Request) -> Taxonomy:
    return request.app.state.taxonomy  # type: ignore[no-any-return]


def words(request: Request) -> Words:
    return Words(
        negotiate(
            request.cookies.get(security.LANGUAGE_COOKIE), request.headers.get("accept-language")
        )
    )


def render(
    request: Request,
    template: str,
    viewer: security.Viewer | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    t = words(request)
    taxonomy = _taxonomy(request)
    response = TEMPLATES.TemplateResponse(
        request,
        template,
        {
            "t": t,
            "lang": t.language,
            "other_lang": next(code for code in LANGUAGES if code != t.language),
            "viewer": viewer,
            "csrf_token": viewer.csrf_token if viewer else security.cookie_token(request),
            "csrf_field": security.CSRF_FIELD,
            "taxonomy": taxonomy,
            "reason_label": lambda code: _reason_label(taxonomy, code, t.language),
            "split_turns": split_turns,
            "here": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
            **context,
        },
        status_code=status_code,
    )
    new_token = getattr(request.state, "new_csrf_cookie", None)
    if new_token:
        security.set_cookie(request, response, security.CSRF_COOKIE, new_token, same_site="strict")
    # Pages show calls' contents: never kept by a shared cache.
    response.headers["Cache-Control"] = "no-store"
    return response


def _reason_label(taxonomy: Taxonomy, code: str | None, language: str) -> str:
    reason = next((r for r in taxonomy.reasons if r.code == code), None)
    return code or "–" if reason is None else reason.label_in(language)


def render_error(request: Request, status: int, message: str) -> Response:
    """Every error under /ui as a page (app/api/errors.py calls it)."""
    return render(request, "error.html", None, status_code=status, status=status, message=message)


# ---- sign-in ------------------------------------------------------------------------------


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path only (never another site)."""
    if not target:
        return "/ui"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/ui") or "\\" in target:
        return "/ui"
    return target


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str | None = None, expired: bool = False) -> Response:
    if not request.app.state.auth_required:
        return RedirectResponse(_safe_next(next), status_code=303)
    return render(request, "login.html", None, next=_safe_next(next), expired=expired)


@router.post(
    "/login", response_class=HTMLResponse, dependencies=[Depends(security.check_login_csrf)]
)
def login(
    request: Request,
    session: SessionDep,
    api_key: Annotated[str, Form(max_length=200)],
    next: Annotated[str, Form(max_length=2000)] = "/ui",
) -> Response:
    if not request.app.state.auth_required:
        return RedirectResponse(_safe_next(next), status_code=303)
    settings = request.app.state.settings
    try:
        token = web_sessions.sign_in(
            session, api_key, datetime.now(UTC), timedelta(hours=settings.web.session_hours)
        )
    except web_sessions.SignInRefused as refused:
        return render(
            request, "login.html", None, status_code=401, next=_safe_next(next), error=str(refused)
        )
    response = RedirectResponse(_safe_next(next), status_code=303)
    security.set_cookie(
        request,
        response,
        security.SESSION_COOKIE,
        token,
        max_age=int(settings.web.session_hours * 3600),
    )
    return response


@router.post("/logout")
def logout(request: Request, session: SessionDep, _viewer: CsrfViewerDep) -> Response:
    token = request.cookies.get(security.SESSION_COOKIE)
    if token:
        web_sessions.sign_out(session, token)
    response = RedirectResponse("/ui/login?signed_out=1", status_code=303)
    response.delete_cookie(security.SESSION_COOKIE, path="/ui")
    return response


@router.get("/lang/{language}")
def switch_language(request: Request, language: str, next: str | None = None) -> Response:
    response = RedirectResponse(_safe_next(next), status_code=303)
    if language in LANGUAGES:
        security.set_cookie(
            request, response, security.LANGUAGE_COOKIE, language, max_age=365 * 24 * 3600
        )
    return response


# ---- the team lead: overview ----------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
def overview(request: Request, session: SessionDep, viewer: ViewerDep) -> Response:
    taxonomy = _taxonomy(request)
    today = datetime.now(UTC).date()
    where, form = overview_filter(request.query_params, today)
    scope = results.Slice(source=where.source, taxonomy_version=taxonomy.version)
    counts = results.reason_counts(session, where.bucket, where.since, where.until, scope)
    products = results.product_counts(session, None, where.since, where.until, TOP_PRODUCTS, scope)
    calls = results.call_counts(session, where.since, where.until, where.source, taxonomy.version)
    quality = audit_reason_accuracy(
        session,
        QualityFilter(
            since=where.since,
            until=where.until,
            taxonomy_version=taxonomy.version,
            source=where.source,
        ),
    )
    chart = stacked_chart(counts["items"], where.bucket, taxonomy.codes, where.since, where.until)
    per_reason: dict[str, int] = {}
    for item in counts["items"]:
        per_reason[item["reason"]] = per_reason.get(item["reason"], 0) + item["count"]
    return render(
        request,
        "overview.html",
        viewer,
        form=form,
        where=where,
        buckets=BUCKETS,
        chart=chart,
        per_reason=per_reason,
        total=sum(per_reason.values()),
        products=products.items,
        calls=calls,
        quality=quality,
        bucket_end=bucket_end,
        range_query=_range_query(where.since, where.until, where.source),
        iso=results.utc_iso,
        last_day=where.until - timedelta(days=1),
    )


def _range_query(since: datetime, until: datetime, source: str | None, **extra: Any) -> str:
    values = {"since": results.utc_iso(since), "until": results.utc_iso(until), "source": source}
    return urlencode({k: v for k, v in {**values, **extra}.items() if v})


# ---- the analyst: calls -------------------------------------------------------------------


@router.get("/calls", response_class=HTMLResponse)
def calls(
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    filters, form = calls_filter(request.query_params, _taxonomy(request))
    page = results.list_extractions(session, filters, page_size=CALLS_PAGE, cursor=cursor or None)
    return render(
        request,
        "calls.html",
        viewer,
        form=form,
        page=page,
        first_page=cursor is not None,
        review_states=REVIEW_STATES,
        statuses=("succeeded", "failed"),
    )


@router.get("/calls.csv")
def calls_csv(request: Request, viewer: ViewerDep) -> Response:
    """The calls of the current filter as CSV, streamed page by page (any size)."""
    filters, form = calls_filter(request.query_params, _taxonomy(request))
    if form.errors:
        raise InvalidRequestError("; ".join(f"{k}: {v}" for k, v in form.errors.items()))
    # A bad filter is refused before the first byte; the rows follow as they are read.
    items = results.iter_extractions(request.app.state.sessions, filters)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(
        _csv_lines(items),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="callx-calls-{stamp}.csv"',
            "Cache-Control": "no-store",
        },
    )


def _cell(value: object) -> object:
    """A text cell a spreadsheet would run as a formula (=, +, -, @, tab, CR first) is written
    with a leading apostrophe: a transcript's fields come from outside."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _csv_lines(items: Iterator[Any]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for item in items:
        e = item.extraction
        writer.writerow(
            map(
                _cell,
                [
                    item.transcript_id,
                    item.external_id or "",
                    item.source,
                    item.language or "",
                    results.utc_iso(item.occurred_at),
                    item.answer.reason or "",
                    item.answer.product or "",
                    item.answer.by or "",
                    e.reason or "",
                    e.product or "",
                    "" if e.confidence is None else e.confidence,
                    e.status,
                    (e.review.cause or "") if e.review else "",
                    "" if e.review is None else str(e.review.in_audit).lower(),
                    e.model,
                    e.taxonomy_version,
                ],
            )
        )
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


@router.get("/calls/{transcript_id}", response_class=HTMLResponse)
def call(
    request: Request, transcript_id: uuid.UUID, session: SessionDep, viewer: ViewerDep
) -> Response:
    detail = results.call_detail(session, transcript_id)
    return render(request, "call.html", viewer, detail=detail, turns=split_turns(detail.text))


# ---- the reviewer: review -----------------------------------------------------------------


@router.get("/review", response_class=HTMLResponse)
def review_next(
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    after: Annotated[str | None, Query(max_length=200)] = None,
    saved: uuid.UUID | None = None,
    end: bool = False,
) -> Response:
    """The next call of the queue after `after` (the calls skipped), one at a time."""
    taxonomy = _taxonomy(request)
    if after:
        decode_queue_cursor(after)  # a bad cursor is a 422 page, not an empty queue
    page = review.review_queue(
        session,
        review.QueueFilter(taxonomy_version=taxonomy.version),
        page_size=1,
        cursor=after or None,
    )
    item = page.items[0] if page.items and not end else None
    card = None
    if item is not None:
        card = review.ReviewCard.of_queue_item(item, after=after, skip_to=page.next_cursor)
    return render(
        request,
        "review.html",
        viewer,
        card=card,
        skipped=bool(after) or end,
        saved=_saved(session, saved),
        saved_name=_call_name(session, saved),
    )


@router.get("/review/{transcript_id}", response_class=HTMLResponse)
def review_call(
    request: Request, transcript_id: uuid.UUID, session: SessionDep, viewer: ViewerDep
) -> Response:
    """One call's review form (from its page): to label or correct any call."""
    card = review.ReviewCard.of_call(results.call_detail(session, transcript_id))
    return render(
        request, "review.html", viewer, card=card, skipped=False, saved=None, saved_name=None
    )


@router.post("/review/{transcript_id}", response_class=HTMLResponse)
def review_save(
    request: Request,
    transcript_id: uuid.UUID,
    session: SessionDep,
    viewer: CsrfViewerDep,
    reason: Annotated[str, Form(max_length=40)],
    version: Annotated[int, Form(ge=0)],
    product: Annotated[str, Form(max_length=200)] = "",
    note: Annotated[str, Form(max_length=2000)] = "",
    after: Annotated[str, Form(max_length=200)] = "",
    back: Annotated[str, Form(max_length=20)] = "queue",
) -> Response:
    if not viewer.can("review"):
        return render_error(
            request,
            403,
            f"this key has scope {viewer.scope!r}; labelling needs 'review' or 'admin'",
        )
    taxonomy = _taxonomy(request)
    reviewer = review.Reviewer(viewer.name, viewer.key_id)
    try:
        data = LabelWrite(
            reason=reason,
            product=product.strip() or None,
            note=note.strip() or None,
            version=version,
        )
        review.write_label(session, transcript_id, data, reviewer, taxonomy)
    except (ConflictError, InvalidRequestError, ValidationError) as refused:
        session.rollback()
        card = review.ReviewCard.of_call(
            results.call_detail(session, transcript_id), after=after, in_queue=back == "queue"
        )
        return render(
            request,
            "review.html",
            viewer,
            status_code=409 if isinstance(refused, ConflictError) else 422,
            card=card,
            skipped=False,
            saved=None,
            saved_name=None,
            refused=_refusal(refused),
            conflict=isinstance(refused, ConflictError) and card.label is not None,
            typed={"reason": reason, "product": product, "note": note},
        )
    if back == "call":
        target = f"/ui/calls/{transcript_id}"
        if request.headers.get("HX-Request"):  # htmx: load the call's page, not a fragment
            return Response(status_code=200, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)
    query = urlencode({k: v for k, v in {"after": after, "saved": str(transcript_id)}.items() if v})
    return RedirectResponse(f"/ui/review?{query}", status_code=303)


def _refusal(error: Exception) -> str:
    if isinstance(error, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
    return str(error)


def _call_name(session: Session, transcript_id: uuid.UUID | None) -> str | None:
    """How the reviewer knows the call just saved: its external id, else callx's."""
    if transcript_id is None:
        return None
    try:
        call = results.get_transcript(session, transcript_id)
    except NotFoundError:
        return None
    return call.external_id or str(call.id)


def _saved(session: Session, transcript_id: uuid.UUID | None) -> Any:
    """The label just saved (to show what the reviewer changed), if any."""
    if transcript_id is None:
        return None
    try:
        history = review.label_history(session, transcript_id)
    except NotFoundError:
        return None
    return history.items[-1] if history.items else None


# ---- batches and models -------------------------------------------------------------------


@router.get("/batches", response_class=HTMLResponse)
def batches(
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    before: datetime | None = None,
) -> Response:
    listed = recent_batches(session, BATCHES_PAGE + 1, before)
    older = listed[BATCHES_PAGE - 1].created_at if len(listed) > BATCHES_PAGE else None
    return render(
        request,
        "batches.html",
        viewer,
        batches=listed[:BATCHES_PAGE],
        older=None if older is None else results.utc_iso(older),
    )


@router.get("/models", response_class=HTMLResponse)
def models(request: Request, session: SessionDep, viewer: ViewerDep) -> Response:
    taxonomy = _taxonomy(request)
    in_use = models_in_use(session, request.app.state.settings, taxonomy.version)
    quality = quality_report(session, QualityFilter(taxonomy_version=taxonomy.version))
    adapters = registry.list_adapters(session, request.app.state.settings)
    return render(
        request, "models.html", viewer, models=in_use, quality=quality, adapters=adapters
    )
