"""Engines and sessions. Sessions are passed explicitly; commit happens once, at the boundary."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings

AfterCommit = Callable[[], None]
_AFTER_COMMIT_KEY = "callx_after_commit"


def build_engine(settings: Settings, pool_size: int | None = None) -> Engine:
    url = settings.database_url
    if url.startswith("sqlite"):
        Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            echo=settings.database.echo,
            connect_args={"timeout": 30, "check_same_thread": False},
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(
        url,
        echo=settings.database.echo,
        pool_size=pool_size or settings.database.pool_size,
        max_overflow=pool_size or settings.database.pool_size,
        pool_pre_ping=True,
        pool_timeout=10,
        connect_args={"connect_timeout": 5},
    )


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    # WAL lets the API read while the embedded worker writes.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def ping(engine: Engine) -> None:
    """One round trip to the database; raises whatever the driver raises when it is down."""
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def build_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def after_commit(session: Session, callback: AfterCommit) -> None:
    """Run `callback` once this session's transaction has committed (e.g. send a task)."""
    session.info.setdefault(_AFTER_COMMIT_KEY, []).append(callback)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit at the end, roll back on error, then run after-commit hooks."""
    session = factory()
    try:
        yield session
        session.commit()
        callbacks = session.info.pop(_AFTER_COMMIT_KEY, [])
    except BaseException:
        session.rollback()
        session.info.pop(_AFTER_COMMIT_KEY, None)
        raise
    finally:
        session.close()
    for callback in callbacks:
        callback()
