"""create_app(): the FastAPI application. The API never calls a model: it stores and queues."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from app.api import (
    analytics,
    batches,
    extractions,
    health,
    metrics,
    models,
    reextractions,
    review,
    transcripts,
)
from app.api.errors import PAGE_ERRORS, register_error_handlers
from app.api.middleware import BodyLimitMiddleware, RequestIdMiddleware
from app.api.openapi import complete_openapi
from app.auth.policy import decide_auth
from app.config import Settings, get_settings
from app.db.session import build_engine, build_sessionmaker
from app.jobs.queue import TaskQueue, build_celery
from app.web import mount_console
from schemas.taxonomy import load_taxonomy

DOCS_ASSETS_URL = "/docs/assets"


def create_app(
    settings: Settings | None = None,
    queue: TaskQueue | None = None,
    *,
    bind_host: str | None = None,
) -> FastAPI:
    """The app. `bind_host` (from `callx serve`) decides whether CALLX_AUTH__REQUIRED=auto
    requires API keys; raises OpenApiRefusedError for keyless serving on a public host."""
    settings = settings or get_settings()
    auth = decide_auth(settings.auth, bind_host)
    # The taxonomy calls are queued for (workers with another one leave them alone), and whose
    # codes the API accepts in filters: a broken file stops the app here, not in a worker.
    taxonomy = load_taxonomy(settings.extraction.taxonomy_path)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = build_engine(settings)
        app.state.settings = settings
        app.state.engine = engine
        app.state.sessions = build_sessionmaker(engine)
        app.state.queue = queue or TaskQueue(build_celery(settings, "callx-api"), settings)
        yield
        engine.dispose()

    # /docs (Swagger UI) and /redoc from files shipped in a package: no CDN, so the docs work
    # on a network without Internet access, where a local model is the point.
    app = FastAPIOffline(
        title="callx",
        version="0.1.0",
        summary="Customer-call transcripts in; product and reason per call out.",
        lifespan=lifespan,
        static_url=DOCS_ASSETS_URL,
        # Swagger UI would send the document to validator.swagger.io for its badge.
        swagger_ui_parameters={"validatorUrl": None},
    )
    app.state.auth_required = auth.required
    app.state.taxonomy = taxonomy
    register_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.api.max_body_bytes)
    app.add_middleware(RequestIdMiddleware)  # the outermost: even a 413 carries the request id
    for module in (
        transcripts,
        batches,
        extractions,
        analytics,
        review,
        models,
        reextractions,
        health,
        metrics,
    ):
        app.include_router(module.router)
    mount_console(app, PAGE_ERRORS)
    complete_openapi(app, taxonomy)
    return app
