"""The task queue as the API and the reconciler see it: send an extraction job by transcript id.

Both sides (this producer and the worker in workers/) take their Celery configuration from
`celery_config()`, so queue names, serialisation and broker options cannot drift apart.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
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
        # idempotent); the embedded SQLite broker takes no such option.
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
