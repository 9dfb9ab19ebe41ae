"""Which workers are alive, and which queued calls no live worker can take.

Each worker's main process writes a heartbeat every `heartbeat_interval_s` (its queues,
backend, model and taxonomy); a worker is live for three intervals after its last one, so
/readyz and /metrics tell a dead pool (or a pool with the wrong taxonomy) from a busy one.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from app.db import workers as workers_db
from app.db.session import session_scope

log = logging.getLogger(__name__)

LIVE_INTERVALS = 3  # a worker is live this many heartbeat intervals after its last one
FORGET_AFTER = timedelta(days=1)  # heartbeats older than this are deleted
ANY_TAXONOMY = "*"  # calls queued without a taxonomy version (before callx recorded one)


@dataclass(frozen=True)
class WorkerIdentity:
    """What a worker says of itself in each heartbeat."""

    name: str
    host: str
    pid: int
    queues: str  # comma-separated
    backend: str
    model: str
    taxonomy_version: str

    @classmethod
    def here(
        cls, node: str, queues: list[str], backend: str, model: str, taxonomy_version: str
    ) -> WorkerIdentity:
        """This process: `node` (Celery's node name) and the pid make the name unique."""
        pid = os.getpid()
        return cls(
            f"{node}:{pid}",
            socket.gethostname(),
            pid,
            ",".join(queues),
            backend,
            model,
            taxonomy_version,
        )


class Heartbeat:
    """Beats in a background thread until stopped; a failed beat (database down) is retried
    at the next interval, never fatal. Stopping removes the worker's row."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        identity: WorkerIdentity,
        interval_s: float,
        model_now: Callable[[Session], str | None] | None = None,
    ) -> None:
        self.sessions = sessions
        self.identity = identity
        self.interval_s = interval_s
        # The model at each beat, for a worker whose model changes while it runs (one that
        # follows the registry's promoted adapter); None or a failure: the identity's.
        self.model_now = model_now
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self, now: datetime | None = None) -> None:
        now = now or datetime.now(UTC)
        with session_scope(self.sessions) as session:
            workers_db.beat(session, asdict(self._identity_now(session)), now)
            workers_db.prune(session, now - FORGET_AFTER)

    def _identity_now(self, session: Session) -> WorkerIdentity:
        if self.model_now is None:
            return self.identity
        try:
            model = self.model_now(session)
        except Exception as exc:  # a registry the main process cannot read: say the start's
            log.warning("could not read the worker's model", extra={"error": type(exc).__name__})
            return self.identity
        return self.identity if model is None else replace(self.identity, model=model)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="callx-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                self.beat()
            except Exception as exc:  # database down: the next beat tries again
                log.warning("heartbeat failed", extra={"error": type(exc).__name__})
            if self._stop.wait(self.interval_s):
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            with session_scope(self.sessions) as session:
                workers_db.remove(session, self.identity.name)
        except Exception as exc:  # it will simply stop being live
            log.warning("could not remove the heartbeat", extra={"error": type(exc).__name__})


@dataclass(frozen=True)
class LiveWorker:
    name: str
    backend: str
    model: str
    taxonomy_version: str
    last_seen: datetime


@dataclass(frozen=True)
class QueueStatus:
    """A queue's live workers, its waiting (queued or running) calls, and those no live worker
    can take, by the taxonomy version they were queued for: {taxonomy version: calls}."""

    queue: str
    workers: list[LiveWorker]
    waiting: int
    unserved: dict[str, int]


def queue_status(
    session: Session, queues: list[str], interval_s: float, now: datetime | None = None
) -> list[QueueStatus]:
    """Per queue: its live workers, its waiting calls and those no live worker serves."""
    now = now or datetime.now(UTC)
    live = workers_db.seen_since(session, now - timedelta(seconds=LIVE_INTERVALS * interval_s))
    waiting = workers_db.queued_by_queue_and_taxonomy(session)
    statuses = []
    for queue in queues:
        serving = [w for w in live if queue in w.queues.split(",")]
        versions = {w.taxonomy_version for w in serving}
        counts = [(taxonomy, n) for q, taxonomy, n in waiting if q == queue]
        unserved: dict[str, int] = {}
        for taxonomy, n in counts:
            # A call queued before callx recorded taxonomies: any worker takes it.
            if not (bool(serving) if taxonomy is None else taxonomy in versions):
                key = ANY_TAXONOMY if taxonomy is None else taxonomy
                unserved[key] = unserved.get(key, 0) + n
        statuses.append(
            QueueStatus(
                queue=queue,
                workers=[
                    LiveWorker(w.name, w.backend, w.model, w.taxonomy_version, w.last_seen)
                    for w in serving
                ],
                waiting=sum(n for _, n in counts),
                unserved=unserved,
            )
        )
    return statuses
