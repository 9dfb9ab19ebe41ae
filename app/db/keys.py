"""API keys: stored, looked up and listed (hashes only; see app/auth/keys.py)."""

from __future__ import annotations

from sqlalchemy import (
    select,
)
from sqlalchemy.orm import Session

from app.db.models import (
    ApiKey,
)


def get_api_key(session: Session, key_id: str) -> ApiKey | None:
    return session.get(ApiKey, key_id)


def add_api_key(session: Session, key: ApiKey) -> None:
    session.add(key)
    session.flush()


def list_api_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)))
