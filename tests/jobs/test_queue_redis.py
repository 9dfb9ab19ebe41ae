"""The task queue against a real Redis: the reconciler and /metrics read its depth."""

from __future__ import annotations

import uuid

from app.config import Settings
from app.jobs.queue import TaskQueue, build_celery


def test_size_of_an_empty_or_never_used_queue_is_zero(
    settings: Settings, clean_broker: None
) -> None:
    # Redis keeps no key for an empty list: a passive declare says "no such queue".
    celery = build_celery(settings, "callx-test")
    queue = TaskQueue(celery, settings)
    assert queue.size(queue.batch) == 0
    assert queue.size("never-used") == 0
    queue.send_extractions([uuid.uuid4() for _ in range(3)], queue.batch)
    assert queue.size(queue.batch) == 3
    celery.close()
