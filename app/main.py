"""create_app(): the FastAPI application. The API never calls a model: it stores and queues."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.api import analytics, batches, extractions, health, metrics, transcripts
from app.api.errors import register_error_handlers
from app.api.middleware import RequestIdMiddleware
from app.auth.policy import decide_auth
from app.config import Settings, get_settings
from app.db.session import build_engine, build_sessionmaker
from app.jobs.queue import TaskQueue, build_celery


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

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = build_engine(settings)
        app.state.settings = settings
        app.state.engine = engine
        app.state.sessions = build_sessionmaker(engine)
        app.state.queue = queue or TaskQueue(build_celery(settings, "callx-api"), settings)
        yield
        engine.dispose()

    app = FastAPI(
        title="callx",
        version="0.1.0",
        summary="Customer-call transcripts in; product and reason per call out.",
        lifespan=lifespan,
    )
    app.state.auth_required = auth.required
    register_error_handlers(app)
    app.add_middleware(RequestIdMiddleware)
    for module in (transcripts, batches, extractions, analytics, health, metrics):
        app.include_router(module.router)
    return app
