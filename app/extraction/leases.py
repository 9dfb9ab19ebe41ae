"""HeldLeases: the claims a worker process holds, renewed while their calls run, given back on
a stop.

A claim's lease is short (ExtractionSettings.lease_s): a worker that dies loses its calls to
the reconciler within that time. A live worker keeps them by renewing their leases from a
thread of its own, every third of a lease, however long a call takes: the model call blocks
only the thread that makes it (llama.cpp and the HTTP clients release the GIL while they
wait), not this one.
"""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from app.db import leases as leases_db
from app.db.session import session_scope

log = logging.getLogger(__name__)

# How long the renewal thread sleeps while no claim is held: a claim made meanwhile is first
# renewed within this much of a third of its lease, well before it runs out.
_IDLE_WAIT_S = 1.0


class HeldLeases:
    """The claims of one process: (transcript id -> claim token, lease length). Thread-safe."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._held: dict[uuid.UUID, tuple[uuid.UUID, int]] = {}
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, transcript_id: uuid.UUID, token: uuid.UUID, lease_s: int) -> None:
        """Keep renewing this claim's lease until let go."""
        with self._changed:
            if self._thread is None and not self._stop.is_set():
                # Started on first use: after any fork, in its process.
                self._thread = threading.Thread(
                    target=self._run, name="callx-lease-renewal", daemon=True
                )
                self._thread.start()
            self._held[transcript_id] = (token, lease_s)

    def let_go(self, transcript_id: uuid.UUID, token: uuid.UUID) -> None:
        """Stop renewing this claim (its call is stored, or abandoned)."""
        with self._changed:
            if self._held.get(transcript_id, (None, 0))[0] == token:
                del self._held[transcript_id]
                self._changed.notify_all()

    def count(self) -> int:
        with self._changed:
            return len(self._held)

    def wait_until_none(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for every held call to end; False if some still run."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._held, timeout)

    def renew(self, now: datetime | None = None) -> int:
        """Extend every held lease by its length from `now`, in one transaction; claims found
        lost (taken over, or closed meanwhile) are let go. Returns how many were renewed."""
        now = now or datetime.now(UTC)
        with self._changed:
            held = dict(self._held)
        if not held:
            return 0
        renewed: set[uuid.UUID] = set()
        with session_scope(self._sessions) as session:
            for lease_s in sorted({lease_s for _, lease_s in held.values()}):
                claims = [(tid, token) for tid, (token, s) in held.items() if s == lease_s]
                renewed |= leases_db.renew_leases(session, claims, now + timedelta(seconds=lease_s))
        for transcript_id, (token, _) in held.items():
            if transcript_id not in renewed:
                self.let_go(transcript_id, token)
        return len(renewed)

    def release(self, now: datetime | None = None) -> list[tuple[uuid.UUID, str]]:
        """Give every held claim back to the queue now (queued, no claim): their calls, if
        they end later, store nothing. Returns (id, queue) of those given back."""
        with self._changed:
            held = dict(self._held)
        if not held:
            return []
        claims = [(tid, token) for tid, (token, _) in held.items()]
        with session_scope(self._sessions) as session:
            released = leases_db.release_claims(session, claims, now or datetime.now(UTC))
        for transcript_id, (token, _) in held.items():
            self.let_go(transcript_id, token)
        return released

    def close(self) -> None:
        """Stop renewing (the leases then run out unless released)."""
        self._stop.set()
        with self._changed:
            thread = self._thread
        if thread is not None:
            thread.join(10)

    def _interval(self) -> float:
        with self._changed:
            shortest = min((lease_s for _, lease_s in self._held.values()), default=None)
        return _IDLE_WAIT_S if shortest is None else shortest / 3

    def _run(self) -> None:
        while not self._stop.wait(self._interval()):
            try:
                self.renew()
            except Exception as exc:  # database away: the next round tries again
                log.warning("lease renewal failed", extra={"error": type(exc).__name__})
