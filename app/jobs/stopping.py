"""A stopping worker's calls in hand: finished if they can be within the grace, else given
back to the queue at once for another worker, rather than left running until their leases
run out."""

from __future__ import annotations

import logging
import uuid

from app.extraction.store import ExtractionStore
from app.jobs.queue import TaskQueue

log = logging.getLogger(__name__)


def hand_back_calls(store: ExtractionStore, queue: TaskQueue, grace_s: float) -> list[uuid.UUID]:
    """Wait up to `grace_s` for the calls `store` holds to end; give back those still running
    (queued, their claims cleared, sent again). Returns the ids given back.

    Called once the worker stops starting calls: what is held then only ends."""
    if store.leases.wait_until_none(grace_s):
        return []
    released = store.leases.release()
    for queue_name in sorted({q for _, q in released}):
        queue.send_extractions(
            [t for t, q in released if q == queue_name], queue_name, fan_out=False
        )
    if released:
        log.warning(
            "stopping: calls still running after the grace given back to the queue",
            extra={"count": len(released), "grace_s": grace_s},
        )
    return [t for t, _ in released]
