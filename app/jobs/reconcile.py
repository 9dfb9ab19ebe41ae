"""The reconciler: the database is the source of truth, the broker may lose messages.

It re-sends (1) transcripts whose worker's lease ran out (the worker died mid-call), and
(2) queued transcripts whose message is gone: after the broker lost its data (Redis restarted
without persistence), or when a queue is empty although the database still has calls waiting
in it (a send that failed after the commit). A re-sent transcript that is already being
worked on, or finished, is skipped by the worker's claim: nothing is processed twice.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from app import metrics
from app.db import leases as leases_db
from app.db.session import session_scope
from app.jobs.queue import TaskQueue

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReconcileReport:
    expired_leases: int
    requeued: int
    broker_reset: bool


class Reconciler:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        queue: TaskQueue,
        *,
        grace_s: float,
        batch_limit: int = 5000,
    ) -> None:
        self.sessions = sessions
        self.queue = queue
        self.grace_s = grace_s
        self.batch_limit = batch_limit
        self._marker = uuid.uuid4().hex

    def run_once(self, now: datetime | None = None) -> ReconcileReport:
        now = now or datetime.now(UTC)
        with session_scope(self.sessions) as session:
            expired = leases_db.requeue_expired_leases(session, now, self.batch_limit)
        for queue_name in {q for _, q in expired}:
            self.queue.send_extractions([t for t, q in expired if q == queue_name], queue_name)

        reset = self.queue.broker_was_reset(self._marker)
        requeued = 0
        for queue_name in (self.queue.interactive, self.queue.batch):
            if not reset and self.queue.size(queue_name) > 0:
                continue  # messages are flowing: nothing says any is lost
            before = now - timedelta(seconds=0 if reset else self.grace_s)
            with session_scope(self.sessions) as session:
                ids = leases_db.take_stale_queued(
                    session, queue_name, before, now, self.batch_limit
                )
            self.queue.send_extractions(ids, queue_name)
            requeued += len(ids)
        metrics.REQUEUED.labels("expired_lease").inc(len(expired))
        metrics.REQUEUED.labels("lost_message").inc(requeued)
        report = ReconcileReport(len(expired), requeued, reset)
        if report.expired_leases or report.requeued:
            log.warning(
                "reconciler re-sent transcripts",
                extra={"expired_leases": len(expired), "requeued": requeued, "broker_reset": reset},
            )
        return report


def run_forever(reconciler: Reconciler, interval_s: float, stop: threading.Event) -> None:
    """The loop a worker runs in a background thread; errors are logged, never fatal."""
    while not stop.wait(interval_s):
        try:
            reconciler.run_once()
        except Exception as exc:  # database or broker down: try again next round
            log.warning("reconciler round failed", extra={"error": type(exc).__name__})
