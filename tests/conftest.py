"""Fixtures: a real PostgreSQL and Redis for the whole run, the schema built by the migrations,
callx API and worker processes started as subprocesses."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from app.config import Settings
from app.db.migrate import upgrade
from app.llm.model_files import default_model_path
from support.env import CACHE_DIR, process_env
from support.services import CallxProcess, PostgresServer, RedisServer, free_port


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
            text("TRUNCATE extractions, transcripts, batches, api_keys, worker_heartbeats CASCADE")
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


@pytest.fixture
def start_callx(tmp_path: Path) -> Iterator[Callable[..., CallxProcess]]:
    """Start `callx <args>` subprocesses; all are stopped at the end of the test."""
    started: list[CallxProcess] = []

    def start(args: list[str], env: dict[str, str], name: str | None = None) -> CallxProcess:
        process = CallxProcess(args, env, tmp_path, name or f"{args[0]}-{uuid.uuid4().hex[:6]}")
        started.append(process.start())
        return process

    yield start
    for process in reversed(started):
        process.stop()


@pytest.fixture
def api_url(
    start_callx: Callable[..., CallxProcess], settings: Settings, clean_db: None, clean_broker: None
) -> str:
    """A real API process (uvicorn) on PostgreSQL and Redis."""
    port = free_port()
    api = start_callx(
        ["serve", "--port", str(port), "--no-worker", "--no-migrate"], process_env(settings), "api"
    )
    url = f"http://127.0.0.1:{port}"
    api.wait_http(url + "/healthz")
    return url
