"""10,000 calls through the API and real workers, one worker killed (SIGKILL) and restarted in
the middle: exactly 10,000 succeeded extractions, none lost, none doubled. The FakeBackend
(with a little simulated model time) keeps this a measure of callx, not of a model."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import httpx

from app.config import Settings
from support.env import fake_worker_env
from support.factories import stored_counts
from support.services import CallxProcess, wait_for

N = 10_000


def test_ten_thousand_calls_with_a_worker_killed_midway(
    api_url: str, settings: Settings, database_url: str, start_callx: Callable[..., CallxProcess]
) -> None:
    env = fake_worker_env(settings, latency_s=0.002)
    start_callx(["worker", "--concurrency", "2"], env, "worker-a")
    victim = start_callx(["worker", "--concurrency", "2"], env, "worker-b")
    records = [
        {"external_id": f"load-{i}", "text": f"Client: appel {i}, facture trop élevée"}
        for i in range(N)
    ]
    started = time.monotonic()
    response = httpx.post(f"{api_url}/v1/batches", json=records, timeout=300)
    assert response.status_code == 202 and response.json()["accepted"] == N
    accepted_s = time.monotonic() - started

    wait_for(
        lambda: stored_counts(database_url).get("succeeded", 0) >= N // 3,
        600,
        "a third done",
        interval=1,
    )
    victim.stop(signal.SIGKILL)
    killed_at = time.monotonic()
    start_callx(["worker", "--concurrency", "2"], env, "worker-c")

    state: dict[str, int] = {}

    def finished() -> bool:
        state.clear()
        state.update(stored_counts(database_url))
        return state.get("succeeded", 0) >= N

    wait_for(finished, 900, f"{N} succeeded", interval=2)
    total_s = time.monotonic() - started
    print(
        f"\nload with fault: accepted {N} in {accepted_s:.1f}s; all succeeded after {total_s:.0f}s "
        f"({N / total_s:.0f} calls/s), {time.monotonic() - killed_at:.0f}s after the kill; {state}"
    )
    assert state["succeeded"] == N
    assert state.get("queued", 0) == state.get("running", 0) == state.get("failed", 0) == 0
    assert state["extraction_rows"] == N  # nothing extracted twice
    assert state["current_dupes"] == 0
