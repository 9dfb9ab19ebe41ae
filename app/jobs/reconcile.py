"""The reconciler: the database is the source of truth, the broker may lose messages.

It re-sends (1) transcripts whose worker's lease ran out (the worker died mid-call: a live
worker renews its leases), (2) the messages a dead worker had taken without starting their
calls, and (3) queued transcripts whose message is gone: after the broker lost its data (Redis
restarted without persistence), or when a queue is empty although the database still has
calls waiting in it (a send that failed after the commit). A re-sent transcript that is
already being worked on, or finished, is skipped by the worker's claim: nothing is processed
twice.

(2) Redis would give such messages back only after visibility_timeout (an hour), and a
shorter one would also take back the messages live workers hold (TaskQueue, celery_config).
A waiting queue says nothing either: the calls may be in it, or in a dead worker's hands. The
reconciler looks at the taken messages instead: one taken longer than the grace ago that
still has calls to do (queued, or running on a lease that ran out) and none running on a live
lease (a live worker renews the lease of the call it runs) is given back to its queue, whole,
once: a long queue of waiting calls is never sent twice.
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
    taken_back: int = 0  # messages of dead workers given back to their queue


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
        # Before the leases: a dead worker's message still shows its call in progress as
        # expired, not as the live claim of whoever takes it once it is re-sent.
        taken_back, in_taken_back = self._give_back_abandoned_messages(now)
        with session_scope(self.sessions) as session:
            expired = leases_db.requeue_expired_leases(session, now, self.batch_limit)
        resend = [(t, q) for t, q in expired if t not in in_taken_back]  # in a message again
        for queue_name in {q for _, q in resend}:
            self.queue.send_extractions([t for t, q in resend if q == queue_name], queue_name)

        reset = self.queue.broker_was_reset(self._marker)
        requeued = 0
        for queue_name in (self.queue.interactive, self.queue.batch):
            if not reset and (taken_back or self.queue.size(queue_name) > 0):
                # Messages are flowing (or were just given back, and may be taken already):
                # nothing says any is lost.
                continue
            before = now - timedelta(seconds=0 if reset else self.grace_s)
            with session_scope(self.sessions) as session:
                ids = leases_db.take_stale_queued(
                    session, queue_name, before, now, self.batch_limit
                )
            self.queue.send_extractions(ids, queue_name)
            requeued += len(ids)
        metrics.REQUEUED.labels("expired_lease").inc(len(expired))
        metrics.REQUEUED.labels("lost_message").inc(requeued)
        report = ReconcileReport(len(expired), requeued, reset, taken_back)
        if report.expired_leases or report.requeued or report.taken_back:
            log.warning(
                "reconciler re-sent transcripts",
                extra={
                    "expired_leases": len(expired),
                    "requeued": requeued,
                    "broker_reset": reset,
                    "taken_back": taken_back,
                },
            )
        return report

    def _give_back_abandoned_messages(self, now: datetime) -> tuple[int, set[uuid.UUID]]:
        """Messages taken more than the grace ago with none of their calls running on a live
        lease: their worker died. Each goes back to its queue. Returns how many, and the
        calls they carry."""
        taken = self.queue.taken_messages(
            (now - timedelta(seconds=self.grace_s)).timestamp(), self.batch_limit
        )
        if not taken:
            return 0, set()
        with session_scope(self.sessions) as session:
            states = leases_db.transcript_states(
                session, list({i for message in taken for i in message.transcript_ids}), now
            )
        given_back, carried = 0, set()
        for message in taken:
            left = {states.get(i) for i in message.transcript_ids}
            # Nothing of it runs on a live lease: its worker died. Given back even when its
            # calls were all finished meanwhile (re-sent by this reconciler): the task skips
            # finished calls, and the message leaves `unacked` now instead of in an hour.
            if "running" not in left:
                self.queue.give_back(message.tag)
                metrics.REQUEUED.labels("dead_worker").inc(
                    sum(states.get(i) in ("queued", "expired") for i in message.transcript_ids)
                )
                given_back += 1
                carried.update(message.transcript_ids)
        return given_back, carried


def run_forever(reconciler: Reconciler, interval_s: float, stop: threading.Event) -> None:
    """The loop a worker runs in a background thread; errors are logged, never fatal."""
    while not stop.wait(interval_s):
        try:
            reconciler.run_once()
        except Exception as exc:  # database or broker down: try again next round
            log.warning("reconciler round failed", extra={"error": type(exc).__name__})
