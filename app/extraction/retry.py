"""Exponential backoff with full jitter for transient backend errors, honouring Retry-After."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    base_s: float = 1.0
    max_s: float = 60.0

    def delay(self, failed_attempts: int, retry_after_s: float | None = None) -> float:
        """Seconds to wait after `failed_attempts` failures (1-based)."""
        ceiling = min(self.max_s, self.base_s * 2 ** (failed_attempts - 1))
        jittered = random.uniform(ceiling / 2, ceiling)
        if retry_after_s is not None:
            # The server knows best; never wait less than it asked, nor absurdly long.
            return min(max(retry_after_s, 0.0), max(self.max_s, 300.0))
        return jittered
