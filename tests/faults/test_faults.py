"""Faults against real processes: a worker killed with SIGKILL, Redis restarted empty,
PostgreSQL stopped. Every accepted call completes exactly once."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import httpx
import redis

from app.config import Settings
from support.env import fake_worker_env
from support.factories import stored_counts, wait_all_succeeded
from support.services import CallxProcess, PostgresServer, RedisServer, wait_for


def submit(api_url: str, n: int, prefix: str) -> str:
    records = [
        {"external_id": f"{prefix}-{i}", "text": f"Client: ma box {i} est en panne"}
        for i in range(n)
    ]
    response = httpx.post(f"{api_url}/v1/batches", json=records, timeout=60)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def test_a_worker_killed_mid_extraction_loses_and_doubles_nothing(
    api_url: str, settings: Settings, database_url: str, start_callx: Callable[..., CallxProcess]
) -> None:
    env = fake_worker_env(settings, latency_s=0.5)
    first = start_callx(["worker", "--concurrency", "2"], env, "worker-1")
    submit(api_url, 30, "kill")
    wait_for(lambda: stored_counts(database_url).get("succeeded", 0) >= 4, 60, "some progress")
    wait_for(lambda: stored_counts(database_url).get("running", 0) >= 1, 30, "a call in progress")
    first.stop(signal.SIGKILL)
    killed_at = time.monotonic()
    start_callx(["worker", "--concurrency", "2"], env, "worker-2")
    state = wait_all_succeeded(database_url, 30, timeout=120)
    print(f"worker kill: 30 accepted, recovered in {time.monotonic() - killed_at:.1f}s: {state}")
    assert state["extraction_rows"] == 30  # no call extracted twice
    assert state["current_dupes"] == 0


def test_calls_sent_several_to_a_message_run_at_once_and_survive_a_killed_worker(
    api_url: str, settings: Settings, database_url: str, start_callx: Callable[..., CallxProcess]
) -> None:
    """A batch of 96 goes out as 16 messages of 6 calls (message_groups); a threads worker
    of concurrency 24 runs a message's calls at once: more calls run than it holds messages.
    Killed mid-batch, nothing is lost or done twice."""
    env = fake_worker_env(settings, latency_s=2.0)
    # No re-sending of waiting calls by the first worker (they would come as one-call messages):
    # no grace period over, and the broker marked as not reset since the last look.
    quiet = {**env, "CALLX_BROKER__REQUEUE_GRACE_S": "600"}
    redis.Redis.from_url(settings.broker_url).set("callx:broker-marker", "test")
    first = start_callx(["worker", "--pool", "threads", "--concurrency", "24"], quiet, "worker-1")
    submit(api_url, 96, "many")
    peak = 0

    def running() -> int:
        nonlocal peak
        peak = max(peak, stored_counts(database_url).get("running", 0))
        return peak

    # One call after the other, 16 messages would be 16 calls running, never more.
    wait_for(lambda: running() >= 20, 30, "more calls running than messages", interval=0.1)
    first.stop(signal.SIGKILL)
    # The killed worker held every message: the queue is empty, the calls still queued in the
    # database are re-sent by the new worker's reconciler once the grace period is over.
    second = start_callx(["worker", "--pool", "threads", "--concurrency", "24"], env, "worker-2")
    state = wait_all_succeeded(database_url, 96, timeout=120)
    assert state["extraction_rows"] == 96 and state["current_dupes"] == 0, state
    assert "reconciler round failed" not in second.log()


def test_redis_restarted_empty_mid_batch_every_call_still_processed(
    api_url: str,
    settings: Settings,
    database_url: str,
    redis_server: RedisServer,
    start_callx: Callable[..., CallxProcess],
) -> None:
    start_callx(
        ["worker", "--concurrency", "1"], fake_worker_env(settings, latency_s=0.2), "worker"
    )
    submit(api_url, 40, "redis")
    wait_for(lambda: stored_counts(database_url).get("succeeded", 0) >= 3, 60, "some progress")
    redis_server.stop()  # no persistence: every queued message is gone
    redis_server.start()
    restarted_at = time.monotonic()
    state = wait_all_succeeded(database_url, 40, timeout=180)
    print(
        f"redis restart: 40 accepted, recovered in {time.monotonic() - restarted_at:.1f}s: {state}"
    )
    assert state["extraction_rows"] == 40
    assert state["current_dupes"] == 0


def test_postgres_stopped_gives_503_and_everything_recovers(
    api_url: str,
    settings: Settings,
    database_url: str,
    postgres: PostgresServer,
    start_callx: Callable[..., CallxProcess],
) -> None:
    worker = start_callx(
        ["worker", "--concurrency", "1"], fake_worker_env(settings, latency_s=0.2), "worker"
    )
    submit(api_url, 10, "before")
    postgres.stop()
    try:
        response = httpx.post(
            f"{api_url}/v1/transcripts", json={"text": "Client: panne"}, timeout=30
        )
        assert response.status_code == 503
        assert "database is unavailable" in response.json()["detail"]
        ready = httpx.get(f"{api_url}/readyz", timeout=30)
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"].startswith("unavailable")
        assert ready.json()["checks"]["broker"] == "ok"
        time.sleep(3)  # the worker meets the outage: it must back off, not die
        assert worker.process is not None and worker.process.poll() is None
    finally:
        postgres.restart()
    wait_for(lambda: httpx.get(f"{api_url}/readyz", timeout=5).status_code == 200, 60, "readyz")
    after = httpx.post(
        f"{api_url}/v1/transcripts", json={"text": "Client: panne après"}, timeout=30
    )
    assert after.status_code == 202
    state = wait_all_succeeded(database_url, 11, timeout=120)
    assert state["extraction_rows"] == 11
    assert "Traceback" not in worker.log() or "OperationalError" in worker.log()
