"""Whether the API requires keys: from CALLX_AUTH__REQUIRED and the host `callx serve` binds."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from app.config import AuthSettings


class OpenApiRefusedError(ValueError):
    """required=false on a host other machines can reach, without allow_open."""


@dataclass(frozen=True)
class AuthDecision:
    required: bool
    message: str


def is_loopback(host: str) -> bool:
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # any other name may resolve to a public interface


def decide_auth(auth: AuthSettings, bind_host: str | None) -> AuthDecision:
    """Keys required or not, and the line that says so at start-up.

    `bind_host` None means the app is not served by `callx serve` (in-process use, another ASGI
    server): "auto" then requires keys, since nothing says the API is local only.
    """
    where = bind_host or "this API"
    if auth.required is True:
        return AuthDecision(True, "API keys required (X-API-Key header)")
    if auth.required == "auto":
        if bind_host is not None and is_loopback(bind_host):
            return AuthDecision(
                False,
                f"no API keys: open to anyone who can reach {bind_host} (embedded default); "
                "set CALLX_AUTH__REQUIRED=true to require them",
            )
        return AuthDecision(
            True, f"API keys required (X-API-Key header): {where} is not loopback-only"
        )
    if bind_host is not None and not is_loopback(bind_host) and not auth.allow_open:
        raise OpenApiRefusedError(
            f"refusing to serve without API keys on {bind_host}: anyone who can reach it could "
            "submit and read calls. Create keys (callx keys create --scope ...) and unset "
            "CALLX_AUTH__REQUIRED, listen on 127.0.0.1, or set CALLX_AUTH__ALLOW_OPEN=true "
            "if this network is trusted"
        )
    return AuthDecision(
        False,
        f"no API keys: open to anyone who can reach {where} (CALLX_AUTH__REQUIRED=false)",
    )
