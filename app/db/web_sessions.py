"""The console's sign-in sessions (hashes of their tokens only). None of these functions
commits."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.db.models import ApiKey, WebSession


def add_web_session(session: Session, web_session: WebSession) -> None:
    session.add(web_session)
    session.flush()


def get_web_session(session: Session, token_sha256: str) -> tuple[WebSession, ApiKey] | None:
    """The session and its key, whatever their state (the caller checks expiry and revocation)."""
    row = session.execute(
        select(WebSession, ApiKey)
        .join(ApiKey, ApiKey.id == WebSession.key_id)
        .where(WebSession.token_sha256 == token_sha256)
    ).one_or_none()
    return None if row is None else (row[0], row[1])


def delete_web_session(session: Session, token_sha256: str) -> None:
    session.execute(delete(WebSession).where(WebSession.token_sha256 == token_sha256))


def delete_expired(session: Session, now: datetime) -> None:
    session.execute(delete(WebSession).where(WebSession.expires_at < now))
