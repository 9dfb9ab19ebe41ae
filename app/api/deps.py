"""Request dependencies: the session (committed once, at the end of the route), settings, queue."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.session import session_scope
from app.queue import TaskQueue


def get_session(request: Request) -> Iterator[Session]:
    with session_scope(request.app.state.sessions) as session:
        yield session


def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def get_queue(request: Request) -> TaskQueue:
    return request.app.state.queue  # type: ignore[no-any-return]


# scope="function": commit (and send the after-commit jobs) before the response goes out,
# so a 202 always means stored, and a failed commit is an error answer, not a lost write.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings)]
QueueDep = Annotated[TaskQueue, Depends(get_queue)]
