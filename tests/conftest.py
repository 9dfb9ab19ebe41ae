"""Fixtures: a real PostgreSQL and Redis for the whole run, the schema built by the migrations,
callx API and worker processes started as subprocesses, and the app on PostgreSQL or SQLite
with calls stored by the worker's code (the review loop's tests and the console's)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from app.config import Settings
from app.db.migrate import upgrade
from app.llm.fake import FakeBackend
from app.llm.model_files import default_model_path
from app.main import create_app
from support.env import CACHE_DIR, process_env
from support.factories import extract_stored
from support.fakes import FakeTaskQueue
from support.services import CallxProcess, PostgresServer, RedisServer, serve_api


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def database_url(postgres: PostgresServer) -> str:
    """A database built by `alembic upgrade head`, as production builds it."""
    admin = create_engine(postgres.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text("CREATE DATABASE callx_test"))
    admin.dispose()
    url = postgres.url("callx_test")
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def model_path() -> Path:
    return default_model_path(CACHE_DIR)


@pytest.fixture
def clean_db(database_url: str) -> Iterator[None]:
    """Tests that go through real processes commit: start each from empty tables."""
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "TRUNCATE extractions, transcripts, batches, api_keys, worker_heartbeats, "
                "promotions, adapter_evaluations, adapters, reextractions RESTART IDENTITY CASCADE"
            )
        )
    engine.dispose()
    yield


@pytest.fixture
def clean_broker(redis_server: RedisServer) -> None:
    import redis

    redis.Redis.from_url(redis_server.url).flushdb()


@pytest.fixture
def settings(database_url: str, redis_server: RedisServer, tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        cache_dir=CACHE_DIR,
        database={"url": database_url},
        broker={"url": redis_server.url},
        extraction={"backend": "fake"},
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Each phase's report on its test item, for fixtures that say more when a test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def start_callx(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., CallxProcess]]:
    """Start `callx <args>` subprocesses; all are stopped at the end of the test. Where the
    test failed, the end of each process's log is printed with the failure (a CI run leaves
    no files to read afterwards)."""
    started: list[CallxProcess] = []

    def start(args: list[str], env: dict[str, str], name: str | None = None) -> CallxProcess:
        process = CallxProcess(args, env, tmp_path, name or f"{args[0]}-{uuid.uuid4().hex[:6]}")
        started.append(process.start())
        return process

    yield start
    for process in reversed(started):
        process.stop()
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        for process in started:
            print(f"----- {process.log_path.name} (last 4000 characters) -----")
            print(process.log()[-4000:])


@pytest.fixture
def api_url(
    start_callx: Callable[..., CallxProcess], settings: Settings, clean_db: None, clean_broker: None
) -> str:
    """A real API process (uvicorn) on PostgreSQL and Redis."""
    return serve_api(start_callx, process_env(settings))


# ---- the app on PostgreSQL and on SQLite, with calls stored by the worker's code (the review
# loop's tests and the console's) ----------------------------------------------------------


@pytest.fixture(params=["postgresql", "sqlite"])
def review_settings(request: pytest.FixtureRequest, settings: Settings, tmp_path: Path) -> Settings:
    """Settings on an empty database (the test PostgreSQL or a SQLite file), without API keys,
    threshold 0.9 and no audit sample unless a test says otherwise."""
    if request.param == "postgresql":
        request.getfixturevalue("clean_db")
        url = settings.database_url
    else:
        url = f"sqlite:///{tmp_path / 'callx.sqlite3'}"
        upgrade(url)
    return settings.model_copy(
        update={
            "database": settings.database.model_copy(update={"url": url}),
            "auth": settings.auth.model_copy(update={"required": False}),
            "review": settings.review.model_copy(update={"threshold": 0.9, "audit_rate": 0.0}),
        }
    )


@pytest.fixture
def client(review_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(review_settings, queue=FakeTaskQueue())) as test_client:  # type: ignore[arg-type]
        yield test_client


Store = Callable[..., list[str]]


@pytest.fixture
def store_calls(client: TestClient, review_settings: Settings) -> Store:
    """Submit calls (texts, or records) and extract them with the scored FakeBackend, under
    the review settings given (the fixture's by default); returns their ids in order."""

    def store(
        calls: list[Any], *, review: dict[str, Any] | None = None, model: str = "fake-a"
    ) -> list[str]:
        records = [{"text": c} if isinstance(c, str) else c for c in calls]
        response = client.post("/v1/batches", json=records)
        assert response.status_code == 202, response.text
        ids = [str(i) for i in response.json()["transcript_ids"]]
        settings = review_settings
        if review is not None:
            settings = settings.model_copy(
                update={"review": settings.review.model_copy(update=review)}
            )
        extract_stored(settings, ids, backend=FakeBackend(scored=True, model=model))
        return ids

    return store
