"""The reconciler against a real Redis and PostgreSQL: a dead worker's taken messages."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import textwrap
import uuid
from datetime import UTC, datetime, timedelta

import redis
from sqlalchemy import create_engine, text

from app.config import Settings
from app.db.session import build_sessionmaker
from app.jobs.queue import TaskQueue, build_celery
from app.jobs.reconcile import Reconciler
from support.factories import add_transcripts

# A worker that takes two messages from the queue, never acknowledges them, and dies.
_DIE_HOLDING_TWO = textwrap.dedent(
    """
    import os, sys
    from kombu import Connection
    with Connection(sys.argv[1]) as connection:
        channel = connection.default_channel
        assert channel.basic_get(sys.argv[2]) is not None
        assert channel.basic_get(sys.argv[2]) is not None
        os._exit(0)
    """
)


def _transcript_of(message: bytes) -> uuid.UUID:
    """The call of a one-call extraction message, as it waits in a Redis queue."""
    body = json.loads(base64.b64decode(json.loads(message)["body"]))
    return uuid.UUID(body[0][0])


def test_a_dead_workers_message_goes_back_once_and_no_waiting_call_is_sent_twice(
    settings: Settings, database_url: str, clean_db: None, clean_broker: None
) -> None:
    engine = create_engine(database_url)
    dead, live, *waiting = add_transcripts(engine, 6)
    celery = build_celery(settings, "callx-test")
    queue = TaskQueue(celery, settings)
    for transcript_id in (dead, live, *waiting):  # one message each, in this order
        queue.send_extractions([transcript_id], queue.batch)
    subprocess.run(
        [sys.executable, "-c", _DIE_HOLDING_TWO, settings.broker_url, queue.batch], check=True
    )
    broker = redis.Redis.from_url(settings.broker_url)
    broker.set("callx:broker-marker", "test")  # not a broker reset: no re-send for that
    assert broker.llen(queue.batch) == 4 and broker.hlen("unacked") == 2
    # The live worker's call runs, its lease renewed: its message is not given back. The dead
    # one's call was in progress too, its lease run out since.
    running = "UPDATE transcripts SET status = 'running', lease_until = :until WHERE id = :id"
    with engine.begin() as connection:
        connection.execute(
            text(running), {"until": datetime.now(UTC) + timedelta(hours=1), "id": live}
        )
        connection.execute(text(running), {"until": datetime.now(UTC), "id": dead})
    reconciler = Reconciler(build_sessionmaker(engine), queue, grace_s=60)
    later = datetime.now(UTC) + timedelta(seconds=90)  # both messages taken over 60 s ago

    report = reconciler.run_once(later)

    assert report.taken_back == 1 and report.expired_leases == 1 and report.requeued == 0
    assert broker.hlen("unacked") == 1  # the live worker's
    in_queue = [_transcript_of(message) for message in broker.lrange(queue.batch, 0, -1)]
    assert sorted(in_queue) == sorted([dead, *waiting])  # the dead one's call sent once
    # Given back once: the next rounds send nothing more, the queue waits as it is.
    assert reconciler.run_once(later + timedelta(seconds=90)).taken_back == 0
    assert broker.llen(queue.batch) == 5
    celery.close()
    engine.dispose()
