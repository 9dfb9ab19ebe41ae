"""The console's sign-in: an API key opens a server-side session, named by a random token
that only the browser's cookie holds (the database keeps its hash). Functions flush; the
caller commits."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from app.auth.keys import scope_allows
from app.auth.service import authenticate, aware
from app.db import web_sessions as sessions_db
from app.db.models import WebSession


@dataclass(frozen=True)
class SignedIn:
    """A live console session: its key (id, name, scope) and the CSRF token of its forms."""

    key_id: str
    name: str | None
    scope: str
    csrf_token: str
    expires_at: datetime


class SignInRefused(Exception):
    """The key cannot open a console session: said why, for the sign-in page."""


def sign_in(session: Session, plaintext_key: str, now: datetime, lifetime: timedelta) -> str:
    """Open a session for a live key that may read; returns its token (for the cookie, and
    nowhere else). Raises SignInRefused."""
    key = authenticate(session, plaintext_key, now)
    if key is None:
        raise SignInRefused("invalid or revoked API key")
    if not scope_allows(key.scope, "read"):
        raise SignInRefused(f"this key has scope {key.scope!r}; the console needs 'read' or more")
    sessions_db.delete_expired(session, now)
    token = secrets.token_urlsafe(32)
    sessions_db.add_web_session(
        session,
        WebSession(
            token_sha256=_digest(token),
            key_id=key.id,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            expires_at=now + lifetime,
        ),
    )
    return token


def current_session(session: Session, token: str, now: datetime) -> SignedIn | None:
    """The live session `token` names, or None: unknown, expired, or its key revoked since."""
    found = sessions_db.get_web_session(session, _digest(token))
    if found is None:
        return None
    web_session, key = found
    if aware(web_session.expires_at) <= now or key.revoked_at is not None:
        return None
    return SignedIn(
        key.id, key.name, key.scope, web_session.csrf_token, aware(web_session.expires_at)
    )


def sign_out(session: Session, token: str) -> None:
    sessions_db.delete_web_session(session, _digest(token))


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
