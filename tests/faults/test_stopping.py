"""Stopping and dying workers, with real processes (PostgreSQL, Redis, `callx worker`).

A stopped worker (SIGTERM) finishes the calls in hand within its grace or gives them back, and
gives back the messages it had taken: none is left running, another worker does the rest at
once. A killed worker's calls come back within a lease and a grace period, not at Redis'
visibility timeout (an hour): a live worker renews its leases, the reconciler gives a dead
worker's taken messages back. The SIGTERM tests make leases and the reconciler's grace longer
than the test: only the stop path can bring the calls back in time."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable

import httpx
import pytest
import redis

from app.config import Settings
from support.env import process_env
from support.factories import stored_counts, wait_all_succeeded
from support.services import CallxProcess, free_port, wait_for


def worker_env(settings: Settings, latency_s: float, **extra: str) -> dict[str, str]:
    """A fake-backend worker taking `latency_s` a call; a reconciler round every second."""
    return process_env(
        settings,
        CALLX_EXTRACTION__BACKEND="fake",
        CALLX_EXTRACTION__FAKE_LATENCY_S=str(latency_s),
        CALLX_BROKER__RECONCILE_INTERVAL_S="1",
        **extra,
    )


# Nothing comes back by a lease running out or by the reconciler within a test.
NO_RECOVERY = {"CALLX_EXTRACTION__LEASE_S": "600", "CALLX_BROKER__REQUEUE_GRACE_S": "600"}


def submit(api_url: str, n: int, prefix: str) -> None:
    records = [
        {"external_id": f"{prefix}-{i}", "text": f"Client: ma box {i} est en panne"}
        for i in range(n)
    ]
    response = httpx.post(f"{api_url}/v1/batches", json=records, timeout=60)
    assert response.status_code == 202, response.text


def mark_broker(settings: Settings) -> redis.Redis:
    """The broker marked as not reset: the reconciler re-sends nothing for that reason."""
    client = redis.Redis.from_url(settings.broker_url)
    client.set("callx:broker-marker", "test")
    return client


def test_a_stopped_worker_finishes_its_calls_and_gives_back_its_messages(
    api_url: str, settings: Settings, database_url: str, start_callx: Callable[..., CallxProcess]
) -> None:
    """SIGTERM to the worker's process group (as `callx serve` and a terminal send it)."""
    broker = mark_broker(settings)
    first = start_callx(
        ["worker", "--concurrency", "2"], worker_env(settings, 1.0, **NO_RECOVERY), "worker-1"
    )
    submit(api_url, 48, "stop")  # 16 messages of 3 calls
    wait_for(lambda: stored_counts(database_url).get("succeeded", 0) >= 2, 60, "some progress")
    wait_for(lambda: stored_counts(database_url).get("running", 0) >= 1, 30, "a call in progress")
    first.stop(signal.SIGTERM, timeout=60)
    assert first.process is not None and first.process.returncode == 0, first.log()[-3000:]
    after_stop = stored_counts(database_url)
    assert after_stop.get("running", 0) == 0, after_stop  # every call in hand finished
    assert broker.hlen("unacked") == 0  # every message it had taken went back

    start_callx(["worker", "--concurrency", "2"], worker_env(settings, 0.05), "worker-2")
    state = wait_all_succeeded(database_url, 48, timeout=90)
    assert state["extraction_rows"] == 48 and state["current_dupes"] == 0, state


def test_callx_serve_stops_its_embedded_worker_leaving_no_call_running(
    settings: Settings,
    database_url: str,
    clean_db: None,
    clean_broker: None,
    start_callx: Callable[..., CallxProcess],
) -> None:
    """`callx serve --worker`, stopped with SIGTERM, stops its worker the same way."""
    broker = mark_broker(settings)
    port = free_port()
    serve = start_callx(
        ["serve", "--port", str(port), "--worker", "--no-migrate"],
        worker_env(settings, 1.0, **NO_RECOVERY),
        "serve",
    )
    url = f"http://127.0.0.1:{port}"
    serve.wait_http(url + "/healthz")
    submit(url, 24, "serve")
    wait_for(lambda: stored_counts(database_url).get("succeeded", 0) >= 2, 60, "some progress")
    wait_for(lambda: stored_counts(database_url).get("running", 0) >= 1, 30, "a call in progress")
    serve.stop(signal.SIGTERM, timeout=60)
    assert serve.process is not None and serve.process.returncode == 0, serve.log()[-3000:]
    state = stored_counts(database_url)
    assert state.get("running", 0) == 0, state
    assert state.get("succeeded", 0) + state.get("queued", 0) == 24, state
    assert broker.hlen("unacked") == 0


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_a_stopped_worker_gives_back_calls_longer_than_its_grace(
    pool: str,
    api_url: str,
    settings: Settings,
    database_url: str,
    start_callx: Callable[..., CallxProcess],
) -> None:
    """SIGTERM to the worker's main process alone (as Docker's init sends it): its calls,
    which would take 30 s, go back after the 1 s grace; another worker does them."""
    mark_broker(settings)
    slow = worker_env(settings, 30.0, CALLX_EXTRACTION__STOP_GRACE_S="1", **NO_RECOVERY)
    first = start_callx(["worker", "--pool", pool, "--concurrency", "2"], slow, "worker-1")
    submit(api_url, 6, "grace")  # 6 messages of one call
    wait_for(
        lambda: stored_counts(database_url).get("running", 0) == 2, 60, "two calls in progress"
    )
    assert first.process is not None
    os.kill(first.process.pid, signal.SIGTERM)
    # Given back while their calls still run: queued again, not left running.
    wait_for(lambda: stored_counts(database_url).get("running", 0) == 0, 20, "the calls given back")
    assert first.process.poll() is None  # still in its 30 s calls

    start_callx(["worker", "--concurrency", "2"], worker_env(settings, 0.05), "worker-2")
    state = wait_all_succeeded(database_url, 6, timeout=20)
    first.stop(signal.SIGTERM, timeout=60)  # its calls end: their results are refused
    state = stored_counts(database_url)
    assert state["succeeded"] == 6 and state["extraction_rows"] == 6, state
    assert "calls still running after the grace given back" in first.log()
    assert "lease lost before the result was stored" in first.log()


def test_a_killed_workers_calls_come_back_within_a_lease_not_an_hour(
    api_url: str, settings: Settings, database_url: str, start_callx: Callable[..., CallxProcess]
) -> None:
    """kill -9 mid-batch with Redis' visibility timeout at its default (an hour): the call in
    progress comes back when its lease runs out, the calls of the messages it had taken and
    not started when the reconciler gives those messages back."""
    broker = mark_broker(settings)
    fast = {
        "CALLX_EXTRACTION__LEASE_S": "10",
        "CALLX_BROKER__REQUEUE_GRACE_S": "3",
        "CALLX_BROKER__VISIBILITY_TIMEOUT_S": "3600",
    }
    first = start_callx(
        ["worker", "--concurrency", "2"], worker_env(settings, 1.0, **fast), "worker-1"
    )
    submit(api_url, 96, "kill")  # 16 messages of 6 calls
    wait_for(lambda: stored_counts(database_url).get("succeeded", 0) >= 2, 60, "some progress")
    wait_for(lambda: stored_counts(database_url).get("running", 0) >= 1, 30, "a call in progress")
    first.stop(signal.SIGKILL)
    assert broker.hlen("unacked") >= 1  # messages the dead worker took, invisible for an hour

    second = start_callx(
        ["worker", "--concurrency", "2"], worker_env(settings, 0.2, **fast), "worker-2"
    )
    state = wait_all_succeeded(database_url, 96, timeout=180)
    assert state["extraction_rows"] == 96 and state["current_dupes"] == 0, state
    given_back = [
        json.loads(line)
        for line in second.log().splitlines()
        if line.startswith("{") and "reconciler re-sent transcripts" in line
    ]
    assert sum(entry.get("taken_back", 0) for entry in given_back) >= 1, second.log()[-3000:]
    wait_for(lambda: broker.hlen("unacked") == 0, 30, "no message left taken")
