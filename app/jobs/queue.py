"""The task queue as the API and the reconciler see it: send an extraction job by transcript id.

Both sides (this producer and the worker in workers/) take their Celery configuration from
`celery_config()`, so queue names, serialisation and broker options cannot drift apart.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from celery import Celery
from kombu.exceptions import ChannelError

from app.config import Settings
from app.logs import request_id

EXTRACT_TASK = "callx.extract_transcript"
EXTRACT_MANY_TASK = "callx.extract_transcripts"
DISPATCH_TASK = "callx.dispatch_extractions"
# Above this many ids, the API sends chunks of ids that a worker fans out into one message
# per transcript: a 10,000-call batch costs the request 20 messages, not 10,000.
FAN_OUT_ABOVE = 100
FAN_OUT_CHUNK = 500
# A batch goes out as at least this many messages (when it has as many calls), however many
# ids a message may carry: a small batch is still shared by many workers.
SPREAD = 16


def message_groups(ids: Sequence[str], ids_per_message: int) -> list[list[str]]:
    """The ids split into messages: up to `ids_per_message` each, at least SPREAD messages."""
    size = max(1, min(ids_per_message, len(ids) // SPREAD))
    return [list(ids[i : i + size]) for i in range(0, len(ids), size)]


def celery_config(settings: Settings) -> dict[str, Any]:
    queues = (settings.broker.interactive_queue, settings.broker.batch_queue)
    return {
        "broker_url": settings.broker_url,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 5,
        # Redis redelivers a message not acknowledged within visibility_timeout (tasks are
        # idempotent); the embedded SQLite broker takes no such option. It stays long (an
        # hour): it counts for every message in hand, a live worker's too (a batch message
        # of slow local calls, a retry waiting out its backoff), and Redis cannot tell a dead
        # worker's. The reconciler gives those back sooner, by what the database says
        # (TaskQueue.taken_messages, app/jobs/reconcile.py).
        "broker_transport_options": (
            {}
            if settings.is_embedded_broker
            else {"visibility_timeout": settings.broker.visibility_timeout_s}
        ),
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_default_queue": queues[0],
        "task_queues_names": queues,
        "worker_prefetch_multiplier": 1,
        "worker_hijack_root_logger": False,
        "enable_utc": True,
    }


def build_celery(settings: Settings, name: str = "callx") -> Celery:
    config = celery_config(settings)
    config.pop("task_queues_names")
    app = Celery(name)
    app.conf.update(config)
    return app


@dataclass(frozen=True)
class TakenMessage:
    """A message that a worker took from the broker and has not acknowledged yet."""

    tag: str
    taken_at: float  # epoch seconds
    transcript_ids: list[uuid.UUID]


class TaskQueue:
    """Sends extraction jobs. Jobs carry ids only: the database row is the source of truth."""

    def __init__(self, celery: Celery, settings: Settings) -> None:
        self._celery = celery
        self.interactive = settings.broker.interactive_queue
        self.batch = settings.broker.batch_queue
        self.ids_per_message = settings.broker.ids_per_message

    def send_extractions(
        self, transcript_ids: Sequence[uuid.UUID | str], queue: str, *, fan_out: bool = True
    ) -> None:
        """Extraction messages of a few ids each (message_groups), or, for many ids, chunks
        that a worker fans out into such messages."""
        if not transcript_ids:
            return
        ids = [str(i) for i in transcript_ids]
        if fan_out and len(ids) > FAN_OUT_ABOVE:
            chunks = [ids[i : i + FAN_OUT_CHUNK] for i in range(0, len(ids), FAN_OUT_CHUNK)]
            self._send(DISPATCH_TASK, [[chunk, queue] for chunk in chunks], queue)
            return
        groups = message_groups(ids, self.ids_per_message)
        if all(len(group) == 1 for group in groups):
            self._send(EXTRACT_TASK, groups, queue)
        else:
            self._send(EXTRACT_MANY_TASK, [[group] for group in groups], queue)

    def _send(self, task: str, arguments: Sequence[Sequence[object]], queue: str) -> None:
        headers = {"callx_request_id": request_id.get()}
        with self._celery.producer_or_acquire() as producer:
            for args in arguments:
                self._celery.send_task(
                    task, args=args, queue=queue, producer=producer, headers=headers
                )

    def size(self, queue: str) -> int:
        """Messages waiting in `queue` on the broker (not counting those being worked on)."""
        with self._celery.connection_for_read() as connection:
            channel = connection.default_channel
            try:
                return int(channel.queue_declare(queue=queue, passive=True).message_count)
            except ChannelError:  # Redis keeps no key for an empty queue: "no such queue"
                return 0

    def taken_messages(self, taken_before: float, limit: int) -> list[TakenMessage]:
        """Messages that workers took before `taken_before` (epoch seconds) and still hold
        unacknowledged, oldest first, with the calls they carry.

        kombu's Redis transport keeps each message a consumer takes in its `unacked` hash
        (with the time it was taken in `unacked_index`) until it is acknowledged or restored
        to its queue; one whose worker died stays there until visibility_timeout. Other
        brokers: none (they give a dead consumer's messages back themselves)."""
        with self._celery.connection_for_read() as connection:
            channel = connection.default_channel
            client = getattr(channel, "client", None)
            if client is None or not hasattr(channel, "unacked_index_key"):
                return []
            tags = client.zrangebyscore(
                channel.unacked_index_key, 0, taken_before, start=0, num=limit, withscores=True
            )
            if not tags:
                return []
            payloads = client.hmget(channel.unacked_key, [tag for tag, _ in tags])
        taken = []
        for (tag, taken_at), payload in zip(tags, payloads, strict=True):
            ids = _message_transcripts(payload)
            if ids:
                tag_text = tag.decode() if isinstance(tag, bytes) else str(tag)
                taken.append(TakenMessage(tag_text, float(taken_at), ids))
        return taken

    def give_back(self, tag: str) -> None:
        """Put a taken message back in its queue, next in line, as visibility_timeout would
        (if it is still unacknowledged: one transaction, safe beside other reconcilers)."""
        with self._celery.connection_for_write() as connection:
            channel = connection.default_channel
            channel.qos.restore_by_tag(tag, client=channel.client)

    def broker_was_reset(self, token: str) -> bool:
        """True if the broker lost its data since we last marked it (or was never marked).

        Redis without persistence forgets every queued message on restart: a marker key that
        disappears says so. Other brokers keep their messages: always False.
        """
        with self._celery.connection_for_write() as connection:
            client = getattr(connection.default_channel, "client", None)
            if client is None or not hasattr(client, "set"):
                return False
            return bool(client.set("callx:broker-marker", token, nx=True))

    def ping(self) -> None:
        """Raise if the broker cannot be reached."""
        with self._celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=3)


def _message_transcripts(payload: bytes | str | None) -> list[uuid.UUID]:
    """The transcript ids of an extraction message as kombu's Redis transport stores it
    taken: [message, exchange, routing key]; none for another task or an unreadable one."""
    if payload is None:
        return []
    try:
        message = json.loads(payload)[0]
        body = message["body"]
        if message["properties"].get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        task = message["headers"]["task"]
        if task == EXTRACT_TASK:
            ids = [args[0]]
        elif task in (EXTRACT_MANY_TASK, DISPATCH_TASK):
            ids = list(args[0])
        else:
            return []
        return [uuid.UUID(str(i)) for i in ids]
    except (ValueError, KeyError, IndexError, TypeError):
        return []
