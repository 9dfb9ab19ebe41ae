"""Re-extraction through the real processes (API, workers on PostgreSQL and Redis), with a
worker killed in the middle: every chosen call extracted again exactly once more, a label kept
as the answer, the rollups exact, and the job submitted again extracting nothing."""

from __future__ import annotations

import signal
from collections.abc import Callable

import httpx
from sqlalchemy import create_engine, text

from app.config import Settings
from support.env import fake_worker_env
from support.factories import stored_counts, wait_all_succeeded
from support.services import CallxProcess, wait_for

N = 40


def _direct_reasons(database_url: str) -> dict[str, int]:
    engine = create_engine(database_url)
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT answer_reason, count(*) FROM extractions "
                "WHERE is_current AND answer_reason IS NOT NULL GROUP BY answer_reason"
            )
        ).all()
    engine.dispose()
    return {reason: count for reason, count in rows}


def _api_reasons(client: httpx.Client) -> dict[str, int]:
    totals: dict[str, int] = {}
    for item in client.get("/v1/analytics/reasons", params={"bucket": "month"}).json()["items"]:
        totals[item["reason"]] = totals.get(item["reason"], 0) + item["count"]
    return totals


def test_a_reextraction_survives_a_killed_worker_and_runs_once(
    api_url: str, settings: Settings, database_url: str, start_callx: Callable[..., CallxProcess]
) -> None:
    client = httpx.Client(base_url=api_url, timeout=30)
    first = start_callx(["worker", "--concurrency", "2"], fake_worker_env(settings, 0.05), "w1")
    texts = [
        "Client: ma box ne s'allume plus",
        "Customer: I was billed twice",
        "Client: où est mon colis",
    ]
    records = [{"external_id": f"r-{i}", "text": texts[i % 3]} for i in range(N)]
    assert client.post("/v1/batches", json=records).status_code == 202
    wait_all_succeeded(database_url, N, timeout=120)
    first.stop()
    labelled = client.get("/v1/extractions", params={"limit": 1}).json()["items"][0]
    put = client.put(
        f"/v1/transcripts/{labelled['transcript_id']}/label", json={"reason": "other", "version": 0}
    )
    assert put.status_code == 200
    before = _api_reasons(client)
    assert before == _direct_reasons(database_url)

    slow = start_callx(["worker", "--concurrency", "2"], fake_worker_env(settings, 0.4), "w2")
    job = client.post("/v1/reextractions", json={})
    assert job.status_code == 202 and job.json()["calls"] == N
    job_id = job.json()["id"]
    wait_for(lambda: client.get(f"/v1/reextractions/{job_id}").json()["done"] >= 6, 60, "some done")
    slow.stop(signal.SIGKILL)  # mid-job: its calls in hand come back by lease and reconciler
    start_callx(["worker", "--concurrency", "2"], fake_worker_env(settings, 0.05), "w3")

    def finished() -> bool:
        return bool(client.get(f"/v1/reextractions/{job_id}").json()["finished"])

    wait_for(finished, 180, "the re-extraction to finish", interval=0.5)
    state = client.get(f"/v1/reextractions/{job_id}").json()
    assert state["done"] == N
    counts = stored_counts(database_url)
    assert counts["succeeded"] == N and counts["current_dupes"] == 0, counts
    assert counts["extraction_rows"] >= 2 * N  # every first answer kept beside its new one
    call = client.get(f"/v1/transcripts/{labelled['transcript_id']}").json()
    assert call["answer"]["by"] == "label" and call["answer"]["reason"] == "other"
    assert _api_reasons(client) == _direct_reasons(database_url) == before
    # The same job again: the one made, nothing queued, no row added.
    rows = counts["extraction_rows"]
    again = client.post("/v1/reextractions", json={})
    assert again.status_code == 200 and again.json()["id"] == job_id
    assert stored_counts(database_url)["extraction_rows"] == rows
