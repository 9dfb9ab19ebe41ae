"""Who looks at the console, and the CSRF check of its forms.

Signed in with an API key, a browser holds an HttpOnly, SameSite cookie naming a server-side
session (app/auth/sessions.py), whose CSRF token every form carries. Without API keys (the
loopback default) there is no sign-in: the viewer is `local`, and the forms carry the token
of a double-submit cookie instead."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request, Response

from app.auth.keys import Scope, scope_allows
from app.auth.sessions import current_session
from app.db.session import session_scope

SESSION_COOKIE = "callx_session"
CSRF_COOKIE = "callx_csrf"
LANGUAGE_COOKIE = "callx_lang"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


@dataclass(frozen=True)
class Viewer:
    """The person at the console: their key's name (or `local`), scope and CSRF token."""

    name: str
    scope: str
    csrf_token: str
    signed_in: bool
    key_id: str | None = None

    def can(self, scope: Scope) -> bool:
        return scope_allows(self.scope, scope)


class SignInNeeded(Exception):
    """No live session: the page sends the browser to the sign-in page."""

    def __init__(self, expired: bool) -> None:
        super().__init__("sign-in needed")
        self.expired = expired


class CsrfRefused(Exception):
    """A POST without this session's CSRF token."""


def _now() -> datetime:
    return datetime.now(UTC)


def cookie_token(request: Request) -> str:
    """The double-submit token of this browser (a new one, set on the answer, if it has none)."""
    token = request.cookies.get(CSRF_COOKIE)
    if not token or len(token) > 100:
        token = getattr(request.state, "new_csrf_cookie", None) or secrets.token_urlsafe(32)
        request.state.new_csrf_cookie = token
    return token


def get_viewer(request: Request) -> Viewer:
    """A dependency: the viewer, or SignInNeeded."""
    if not request.app.state.auth_required:
        return Viewer("local", "admin", cookie_token(request), signed_in=False)
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise SignInNeeded(expired=False)
    with session_scope(request.app.state.sessions) as session:
        signed = current_session(session, token, _now())
    if signed is None:
        raise SignInNeeded(expired=True)
    return Viewer(
        signed.name or signed.key_id, signed.scope, signed.csrf_token, True, signed.key_id
    )


ViewerDep = Annotated[Viewer, Depends(get_viewer)]


async def check_csrf(request: Request, viewer: ViewerDep) -> Viewer:
    """A dependency of every POST: the form's (or the X-CSRF-Token header's) token must be the
    viewer's; CsrfRefused otherwise."""
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not sent or not hmac.compare_digest(sent.encode(), viewer.csrf_token.encode()):
        raise CsrfRefused()
    return viewer


async def check_login_csrf(request: Request) -> None:
    """The sign-in form's CSRF check, before any session: the double-submit cookie."""
    form = await request.form()
    sent = form.get(CSRF_FIELD)
    cookie = request.cookies.get(CSRF_COOKIE)
    if (
        not isinstance(sent, str)
        or not cookie
        or not hmac.compare_digest(sent.encode(), cookie.encode())
    ):
        raise CsrfRefused()


CsrfViewerDep = Annotated[Viewer, Depends(check_csrf)]


def secure_cookies(request: Request) -> bool:
    setting = request.app.state.settings.web.secure_cookie
    return request.url.scheme == "https" if setting == "auto" else bool(setting)


def set_cookie(
    request: Request,
    response: Response,
    name: str,
    value: str,
    *,
    max_age: int | None = None,
    same_site: str = "lax",
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/ui",
        httponly=True,
        samesite=same_site,  # type: ignore[arg-type]
        secure=secure_cookies(request),
    )
