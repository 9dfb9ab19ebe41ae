"""The key format, cx_<id>_<secret>: the id is public, only a hash of the secret is stored."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Literal, get_args

Scope = Literal["ingest", "read", "review", "admin"]
SCOPES: tuple[str, ...] = get_args(Scope)

PREFIX = "cx"
ID_CHARS = 8
SECRET_BYTES = 32


@dataclass(frozen=True)
class NewKey:
    id: str
    secret: str

    @property
    def plaintext(self) -> str:
        return f"{PREFIX}_{self.id}_{self.secret}"


def generate_key() -> NewKey:
    # Hex ids contain no "_", so the first two underscores always split the key right.
    return NewKey(id=secrets.token_hex(ID_CHARS // 2), secret=secrets.token_urlsafe(SECRET_BYTES))


def parse_key(plaintext: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed key, else None."""
    prefix, _, rest = plaintext.strip().partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != PREFIX or len(key_id) != ID_CHARS or not secret:
        return None
    return key_id, secret


def hash_secret(secret: str) -> str:
    # The secret has 256 random bits: a plain SHA-256 cannot be brute-forced, no KDF needed.
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, secret_sha256: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), secret_sha256)


# What each scope may do besides its own endpoints: a reviewer reads the calls it labels.
_INCLUDES = {"admin": {"ingest", "read", "review"}, "review": {"read"}}


def scope_allows(key_scope: str, needed: Scope) -> bool:
    """admin may do everything; review also reads; ingest and read only their own endpoints."""
    return key_scope == needed or needed in _INCLUDES.get(key_scope, set())
