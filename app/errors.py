"""Domain errors, raised by the services; app/api/errors.py maps each to one HTTP status."""


class NotFoundError(Exception):
    """The thing asked for does not exist (404)."""


class ConflictError(Exception):
    """The request contradicts what is stored (409)."""


class InvalidRequestError(Exception):
    """A value the schema let through but the service refuses, said why (422)."""


class PayloadTooLargeError(Exception):
    """Over a configured size limit (413)."""
