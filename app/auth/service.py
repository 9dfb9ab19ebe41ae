"""Creating, listing, revoking and checking API keys. Functions flush; the caller commits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from app.auth.keys import NewKey, Scope, generate_key, hash_secret, parse_key, secret_matches
from app.db import keys as keys_db
from app.db.models import ApiKey

# last_used_at is a hint for spotting unused keys: one write a minute per key is plenty.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def create_api_key(session: Session, scope: Scope, name: str | None = None) -> tuple[ApiKey, str]:
    """Store a new key; returns its row and the plaintext key, which is not kept anywhere."""
    new: NewKey = generate_key()
    while keys_db.get_api_key(session, new.id) is not None:  # 32-bit ids: rare, but possible
        new = generate_key()
    key = ApiKey(id=new.id, name=name, scope=scope, secret_sha256=hash_secret(new.secret))
    keys_db.add_api_key(session, key)
    return key, new.plaintext


def list_api_keys(session: Session) -> list[ApiKey]:
    return keys_db.list_api_keys(session)


def find_api_key(session: Session, reference: str) -> ApiKey | None:
    """A key by its id, or by the whole key (e.g. one found in a leaked config)."""
    parsed = parse_key(reference)
    return keys_db.get_api_key(session, parsed[0] if parsed else reference.strip())


def revoke_api_key(session: Session, key: ApiKey, now: datetime) -> None:
    """From now on the key is refused (checked on every request, nothing cached)."""
    if key.revoked_at is None:
        key.revoked_at = now
        session.flush()


def authenticate(session: Session, plaintext: str, now: datetime) -> ApiKey | None:
    """The live key that `plaintext` is, or None (malformed, unknown, wrong secret, revoked)."""
    parsed = parse_key(plaintext)
    if parsed is None:
        return None
    key_id, secret = parsed
    key = keys_db.get_api_key(session, key_id)
    if key is None or key.revoked_at is not None or not secret_matches(secret, key.secret_sha256):
        return None
    if key.last_used_at is None or aware(key.last_used_at) < now - LAST_USED_RESOLUTION:
        key.last_used_at = now
        session.flush()
    return key


def aware(value: datetime) -> datetime:
    # SQLite gives timestamps back without their zone; callx always writes UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
