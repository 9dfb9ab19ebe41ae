"""Domain errors, raised by the services; app/api/errors.py maps each to one HTTP status."""

from __future__ import annotations


class RequestError(Exception):
    """A request refused, said why and, where it is known, where: `loc` as in a validation
    error (`("body", "metadata")`, `("query", "since")`)."""

    def __init__(self, message: str, *, loc: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.loc = loc


class NotFoundError(RequestError):
    """The thing asked for does not exist (404)."""


class ConflictError(RequestError):
    """The request contradicts what is stored (409)."""


class InvalidRequestError(RequestError):
    """A value the schema let through but the service refuses, said why (422)."""


class PayloadTooLargeError(RequestError):
    """Over a configured size limit (413)."""
