"""Group commit: requests from many threads written together, one transaction per group.

A worker of the openai backend runs hundreds of calls at once, and each call writes twice
(its claim, its result). One transaction per write costs more CPU (SQLAlchemy, the driver,
a round trip, a commit) than the call itself. A GroupCommitter gives the writes one thread
(ExtractionStore: claims and results alike): a caller hands its request over and waits; the
thread takes every request waiting (up to `max_batch`), runs them as one transaction and
hands each caller its own answer.
Nothing waits for a group to fill: a lone request is written at once, and requests that
arrive meanwhile form the next group, so latency under light load stays one transaction.

The caller returns only once its transaction has committed: a task that acknowledges its
message after that loses nothing. Two requests with the same key never share a group (the
later one waits for the next), and if a group fails, each of its requests is tried alone,
so one bad request fails only its own caller.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from app.db.session import session_scope

log = logging.getLogger(__name__)

Request = TypeVar("Request")
Answer = TypeVar("Answer")

# Runs a group in one session; returns one answer per request, in the same order.
RunGroup = Callable[[Session, Sequence[Request]], Sequence[Answer]]


class GroupCommitter(Generic[Request, Answer]):
    """Writes requests in groups, one transaction each, from a thread of its own."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        run_group: RunGroup[Request, Answer],
        *,
        key: Callable[[Request], Hashable],
        name: str,
        max_batch: int = 200,
    ) -> None:
        self._sessions = sessions
        self._run_group = run_group
        self._key = key
        self._name = name
        self._max_batch = max_batch
        self._pending: deque[tuple[Request, Future[Answer]]] = deque()
        self._ready = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None

    def submit(self, request: Request) -> Answer:
        """Write `request` with whatever else is waiting; returns once committed."""
        future: Future[Answer] = Future()
        with self._ready:
            if self._closed:
                raise RuntimeError(f"{self._name} is closed")
            if self._thread is None:  # started on first use: after any fork, in its process
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._pending.append((request, future))
            self._ready.notify()
        return future.result()

    def close(self) -> None:
        """Write what is waiting, then stop the thread."""
        with self._ready:
            self._closed = True
            self._ready.notify()
            thread = self._thread
        if thread is not None:
            thread.join(30)

    def _next_group(self) -> list[tuple[Request, Future[Answer]]] | None:
        with self._ready:
            while not self._pending:
                if self._closed:
                    return None
                self._ready.wait()
            group: list[tuple[Request, Future[Answer]]] = []
            keys: set[Hashable] = set()
            deferred: list[tuple[Request, Future[Answer]]] = []
            while self._pending and len(group) < self._max_batch:
                item = self._pending.popleft()
                key = self._key(item[0])
                if key in keys:
                    deferred.append(item)
                else:
                    keys.add(key)
                    group.append(item)
            self._pending.extendleft(reversed(deferred))
            return group

    def _run(self) -> None:
        while (group := self._next_group()) is not None:
            try:
                self._write(group)
            except BaseException as exc:  # the thread must outlive any group
                log.exception("group commit failed", extra={"committer": self._name})
                for _, future in group:
                    if not future.done():
                        future.set_exception(exc)

    def _write(self, group: list[tuple[Request, Future[Answer]]]) -> None:
        try:
            answers = self._transaction([request for request, _ in group])
        except Exception as exc:
            if len(group) == 1:
                group[0][1].set_exception(exc)
                return
            # Alone, each request either succeeds or fails for itself.
            for item in group:
                self._write([item])
            return
        for (_, future), answer in zip(group, answers, strict=True):
            future.set_result(answer)

    def _transaction(self, requests: list[Request]) -> Sequence[Answer]:
        with session_scope(self._sessions) as session:
            return self._run_group(session, requests)
