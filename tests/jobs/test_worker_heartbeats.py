"""Worker heartbeats and the queue status /readyz reports, on real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import create_engine, text

from app.db.session import build_sessionmaker
from app.jobs.workers import Heartbeat, WorkerIdentity, queue_status
from support.factories import add_transcripts

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def identity(name: str, queues: str, taxonomy: str) -> WorkerIdentity:
    return WorkerIdentity(name, "host", 1, queues, "fake", "fake-keywords-1", taxonomy)


def _status(sessions: Any, queues: list[str]) -> list[Any]:
    """queue_status in a session closed at once: an open one would hold its locks (and a
    later TRUNCATE of the tables) until the garbage collector came by."""
    with sessions() as session:
        return queue_status(session, queues, 10, NOW)


def test_live_workers_and_the_calls_no_live_worker_can_take(
    database_url: str, clean_db: None
) -> None:
    engine = create_engine(database_url)
    sessions = build_sessionmaker(engine)
    # Queued calls: 3 for taxonomy "a" in `batch`, 2 for "b" in `batch`, 1 recorded before
    # callx kept taxonomies (any worker), 1 in `interactive` for "a".
    ids = add_transcripts(engine, 7)
    with engine.begin() as connection:
        for transcript_id, (queue, taxonomy) in zip(
            ids,
            [("batch", "a")] * 3 + [("batch", "b")] * 2 + [("batch", None), ("interactive", "a")],
            strict=True,
        ):
            connection.execute(
                text("UPDATE transcripts SET queue = :q, taxonomy_version = :t WHERE id = :i"),
                {"q": queue, "t": taxonomy, "i": transcript_id},
            )

    queues = ["interactive", "batch"]
    nobody = {s.queue: s for s in _status(sessions, queues)}
    assert nobody["batch"].workers == [] and nobody["batch"].waiting == 6
    assert nobody["batch"].unserved == {"a": 3, "b": 2, "*": 1}

    batch_a = Heartbeat(sessions, identity("w1", "batch", "a"), 10)
    batch_a.beat(NOW - timedelta(seconds=5))
    # Silent for longer than three intervals: dead.
    Heartbeat(sessions, identity("w2", "interactive,batch", "b"), 10).beat(
        NOW - timedelta(seconds=31)
    )
    status = {s.queue: s for s in _status(sessions, queues)}
    assert [w.name for w in status["batch"].workers] == ["w1"]
    assert status["batch"].unserved == {"b": 2}  # "a" and the untagged call are served
    assert status["interactive"].workers == [] and status["interactive"].unserved == {"a": 1}

    batch_a.beat(NOW)  # a second beat updates the same row
    Heartbeat(sessions, identity("w2", "interactive,batch", "b"), 10).beat(NOW)
    status = {s.queue: s for s in _status(sessions, queues)}
    assert sorted(w.name for w in status["batch"].workers) == ["w1", "w2"]
    assert status["batch"].unserved == {}
    assert status["interactive"].unserved == {"a": 1}  # w2 serves interactive, with "b"

    batch_a.stop()  # a worker that stops says so: no longer live at once
    status = {s.queue: s for s in _status(sessions, queues)}
    assert [w.name for w in status["batch"].workers] == ["w2"]
    assert status["batch"].unserved == {"a": 3}
    engine.dispose()


def test_a_heartbeat_names_the_model_the_worker_runs_now(database_url: str, clean_db: None) -> None:
    """A worker that follows the registry switches adapters while it runs: each beat asks;
    a failed answer keeps the beat going with the model it started with."""
    engine = create_engine(database_url)
    sessions = build_sessionmaker(engine)
    answers: list[Any] = ["base.gguf+v2.gguf", RuntimeError("registry unreadable"), None]

    def model_now(_: Any) -> str | None:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    heartbeat = Heartbeat(sessions, identity("w1", "batch", "a"), 10, model_now=model_now)
    seen = []
    for _ in range(3):
        heartbeat.beat(NOW)
        with engine.connect() as connection:
            seen.append(connection.execute(text("SELECT model FROM worker_heartbeats")).scalar())
    assert seen == ["base.gguf+v2.gguf", "fake-keywords-1", "fake-keywords-1"]
    heartbeat.stop()
    engine.dispose()
