"""ExtractionStore: a worker process's claims on transcripts and its results, group-committed.

Every extraction writes twice, in two short transactions around the model call: its claim
(status running, a lease and a token) and its result (only if the claim still holds). Many
calls run at once in a worker of an API backend; their writes share transactions here
(app/db/group_commit.py), which saves most of the CPU a transaction costs, and PostgreSQL
connections: one writer per worker process, whatever its concurrency.

Each claim's lease is renewed while its call runs (HeldLeases), until its result is stored.
Each result is stored with its review decision (app/extraction/routing.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy.orm import Session, sessionmaker

from app.db import leases as leases_db
from app.db import results as results_db
from app.db.group_commit import GroupCommitter
from app.extraction.leases import HeldLeases
from app.extraction.pipeline import ExtractionOutcome
from app.extraction.routing import ReviewPolicy
from schemas.extraction import product_key


@dataclass(frozen=True)
class Claim:
    """A transcript this worker holds until its lease runs out."""

    transcript_id: uuid.UUID
    token: uuid.UUID
    text: str
    occurred_at: datetime
    source: str
    language: str | None = None


@dataclass(frozen=True)
class _ClaimRequest:
    transcript_id: uuid.UUID
    lease_s: int
    taxonomy_version: str


@dataclass(frozen=True)
class _Result:
    claim: Claim
    outcome: ExtractionOutcome


class ExtractionStore:
    """Claims and results of one process; safe to use from many threads.

    Claims and results share one group committer: while a transaction is being written, both
    kinds queue up, and the next transaction takes them all (claims first, results last: the
    results' rollup rows are the hot ones, locked until the commit)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        review: ReviewPolicy | None = None,
        max_batch: int = 200,
    ) -> None:
        policy = review or ReviewPolicy()

        def write_group(
            session: Session, requests: Sequence[_ClaimRequest | _Result]
        ) -> list[Claim | None | bool]:
            return _write_group(session, requests, policy)

        self._writes: GroupCommitter[_ClaimRequest | _Result, Claim | None | bool] = GroupCommitter(
            sessions, write_group, key=_transcript_of, name="callx-writes", max_batch=max_batch
        )
        # Renewals and releases take a connection of their own: never behind a group.
        self.leases = HeldLeases(sessions)

    def claim(
        self, transcript_id: uuid.UUID, lease_s: int, *, taxonomy_version: str
    ) -> Claim | None:
        """Claim a queued transcript (or one whose lease ran out), its lease renewed until
        the result is stored. None: finished, held by another worker, or queued for another
        taxonomy than `taxonomy_version`."""
        request = _ClaimRequest(transcript_id, lease_s, taxonomy_version)
        claim = cast("Claim | None", self._writes.submit(request))
        if claim is not None:
            self.leases.hold(claim.transcript_id, claim.token, lease_s)
        return claim

    def store(self, claim: Claim, outcome: ExtractionOutcome) -> bool:
        """Store the outcome as the transcript's current extraction and close the claim.
        False (and nothing stored): the lease was lost to another worker meanwhile."""
        try:
            return self._writes.submit(_Result(claim, outcome)) is True
        finally:
            self.leases.let_go(claim.transcript_id, claim.token)

    def abandon(self, claim: Claim) -> None:
        """Stop renewing a claim whose call failed unexpectedly: its lease runs out and the
        reconciler sends it again."""
        self.leases.let_go(claim.transcript_id, claim.token)

    def close(self) -> None:
        self.leases.close()
        self._writes.close()


def _transcript_of(request: _ClaimRequest | _Result) -> uuid.UUID:
    return (
        request.transcript_id if isinstance(request, _ClaimRequest) else request.claim.transcript_id
    )


def _write_group(
    session: Session, requests: Sequence[_ClaimRequest | _Result], review: ReviewPolicy
) -> list[Claim | None | bool]:
    claims = [r for r in requests if isinstance(r, _ClaimRequest)]
    results = [r for r in requests if isinstance(r, _Result)]
    claimed = iter(_claim_group(session, claims) if claims else [])
    stored = iter(_store_group(session, results, review) if results else [])
    return [next(claimed) if isinstance(r, _ClaimRequest) else next(stored) for r in requests]


def _claim_group(session: Session, requests: Sequence[_ClaimRequest]) -> list[Claim | None]:
    now = datetime.now(UTC)
    token = uuid.uuid4()  # one per group: ids are unique within a group
    claimed: dict[uuid.UUID, leases_db.ClaimedTranscript] = {}
    for lease_s, taxonomy in sorted({(r.lease_s, r.taxonomy_version) for r in requests}):
        claimed.update(
            leases_db.claim_transcripts(
                session,
                [
                    r.transcript_id
                    for r in requests
                    if (r.lease_s, r.taxonomy_version) == (lease_s, taxonomy)
                ],
                token,
                now,
                now + timedelta(seconds=lease_s),
                taxonomy,
            )
        )
    answers: list[Claim | None] = []
    for request in requests:
        row = claimed.get(request.transcript_id)
        answers.append(
            None
            if row is None
            else Claim(row.id, token, row.text, row.occurred_at, row.source, row.language)
        )
    return answers


def _store_group(session: Session, results: Sequence[_Result], review: ReviewPolicy) -> list[bool]:
    closed = leases_db.finish_transcripts(
        session,
        [(r.claim.transcript_id, r.claim.token, r.outcome.status) for r in results],
        datetime.now(UTC),
    )
    results_db.add_current_extractions(
        session, [_extraction_row(r, review) for r in results if r.claim.transcript_id in closed]
    )
    return [r.claim.transcript_id in closed for r in results]


def _extraction_row(result: _Result, review: ReviewPolicy) -> dict[str, Any]:
    outcome = result.outcome
    transcript_id = result.claim.transcript_id
    return {
        "id": uuid.uuid4(),
        "transcript_id": transcript_id,
        "occurred_at": result.claim.occurred_at,
        "source": result.claim.source,
        "product_key": product_key(outcome.product),
        **asdict(outcome),
        **review.decide(transcript_id, outcome, result.claim.text).columns(),
    }
