"""What a backend raises. The pipeline decides what is retried."""

from __future__ import annotations


class BackendError(Exception):
    """A failure that retrying will not fix (bad credentials, a request the server refuses)."""

    kind = "backend_error"


class TransientBackendError(BackendError):
    """Timeouts, 429, 5xx, refused connections: worth retrying after a pause."""

    def __init__(self, message: str, *, kind: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after_s = retry_after_s


class InvalidAnswerError(BackendError):
    """The model's answer did not validate, even after the error was fed back to it."""

    kind = "invalid_answer"

    def __init__(self, message: str, *, raw_answer: str | None, attempts: int) -> None:
        super().__init__(message)
        self.raw_answer = raw_answer
        self.attempts = attempts
