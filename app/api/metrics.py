"""GET /metrics: Prometheus text. Process counters, plus gauges read at scrape time: calls per
status (database) and messages waiting per queue (broker)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from fastapi import APIRouter, Request, Response
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from app.jobs.queue import TaskQueue
from app.jobs.workers import queue_status
from app.results import service as results

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class StateCollector(Collector):
    """Gauges computed when Prometheus scrapes: never stale, nothing to keep in sync."""

    def __init__(self, request_app: object) -> None:
        self.app = request_app

    def collect(self) -> Iterator[GaugeMetricFamily]:
        state = self.app.state  # type: ignore[attr-defined]
        calls = GaugeMetricFamily("callx_transcripts", "Transcripts by status", labels=["status"])
        try:
            with state.sessions() as session:
                rows = results.calls_by_status(session)
            for status, count in rows.items():
                calls.add_metric([status], count)
        except Exception as exc:
            log.warning("metrics: database unavailable", extra={"error": type(exc).__name__})
        yield calls
        depth = GaugeMetricFamily(
            "callx_queue_depth", "Messages waiting per queue", labels=["queue"]
        )
        queue: TaskQueue = state.queue
        for name in (queue.interactive, queue.batch):
            try:
                depth.add_metric([name], queue.size(name))
            except Exception as exc:
                log.warning("metrics: broker unavailable", extra={"error": type(exc).__name__})
        yield depth
        live = GaugeMetricFamily(
            "callx_workers_live", "Live workers (a heartbeat) per queue", labels=["queue"]
        )
        unserved = GaugeMetricFamily(
            "callx_calls_unserved",
            "Calls waiting in a queue that no live worker can take, by the taxonomy version "
            "they were queued for",
            labels=["queue", "taxonomy_version"],
        )
        try:
            with state.sessions() as session:
                interval = state.settings.broker.heartbeat_interval_s
                statuses = queue_status(session, [queue.interactive, queue.batch], interval)
            for queue_state in statuses:
                live.add_metric([queue_state.queue], len(queue_state.workers))
                for version, count in queue_state.unserved.items():
                    unserved.add_metric([queue_state.queue, version], count)
        except Exception as exc:
            log.warning("metrics: database unavailable", extra={"error": type(exc).__name__})
        yield live
        yield unserved


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    registry = CollectorRegistry()
    registry.register(StateCollector(request.app))
    body = generate_latest(REGISTRY) + generate_latest(registry)
    return Response(body, media_type=CONTENT_TYPE)
