"""Domain errors of ingestion; api/errors.py maps them to HTTP answers."""


class NotFoundError(Exception):
    pass


class ConflictError(Exception):
    pass
