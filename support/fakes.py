"""Test doubles shared by the API tests (named Fake…; never the only test of a feature)."""

from __future__ import annotations

import uuid


class FakeTaskQueue:
    """Records what would be sent to the broker."""

    interactive, batch = "interactive", "batch"

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def send_extractions(self, ids: list[uuid.UUID], queue: str) -> None:
        self.sent += [(str(i), queue) for i in ids]

    def ping(self) -> None:
        return None

    def size(self, queue: str) -> int:
        return sum(1 for _, q in self.sent if q == queue)
