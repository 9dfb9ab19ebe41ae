"""Ingestion: POST /v1/batches of 10,000 calls against a floor, and single submissions.

    .venv/bin/python -m bench.ingest [--quick]

Everything runs here, in one run: PostgreSQL and Redis (support/services.py), the API as a real
process (`callx serve --no-worker --no-migrate`: uvicorn, ONE process, no worker).

Floor: the same rows (same columns, fresh external_ids) written by binary COPY into `transcripts`
in one transaction, plus a pipelined LPUSH to Redis of as many messages as there are calls,
each the size of a real Celery extraction message. That is the least the database and the
broker can be asked to do for 10,000 calls; callx does more (it validates every record, hashes
the texts, checks duplicates, answers per record) and less on the broker (ids are sent as
chunks a worker fans out: 20 messages for 10,000 calls).

callx: the same 10,000 records (fresh ids) POSTed as one JSON array and as NDJSON, wall time
seen by the client (upload and answer included). Median of the repeats.

Single submissions: 50 concurrent clients (asyncio + httpx, in this process, on the same
machine as the server) POST /v1/transcripts for a fixed time: requests/s and latency.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis

from app.config import Settings
from app.db.transcripts import COPY_TRANSCRIPTS, COPY_TYPES
from app.jobs.queue import TaskQueue, build_celery
from bench.common import BenchRow, report
from bench.data_gen import Stack, new_external_ids, stack
from support.calls import CALLS

BATCH = 10_000
TARGET_RATIO = 0.5
TARGET_RATE = 5_000.0
CLIENTS = 50
def make_records(n: int) -> list[dict[str, Any]]:
    """n realistic calls (a few hundred characters each), fresh external ids."""
    start = datetime(2026, 11, 1, tzinfo=UTC)
    records = []
    for i, external_id in enumerate(new_external_ids(n)):
        call = CALLS[i % len(CALLS)]
        records.append(
            {
                "external_id": external_id,
                "source": "bench",
                "language": call["language"],
                "occurred_at": (start + timedelta(seconds=37 * i)).isoformat(),
                "text": f"{call['text']}\nAgent: dossier {i}, autre chose ?\nClient: non merci.",
                "metadata": {"agent": f"A{i % 40}", "site": "Lyon" if i % 2 else "Lille"},
            }
        )
    return records


def celery_message_size(running: Stack) -> int:
    """Bytes of one real extraction message as Celery stores it in Redis."""
    settings = Settings(database={"url": running.database_url}, broker={"url": running.redis.url})
    queue = TaskQueue(build_celery(settings, "bench-probe"), settings)
    queue.send_extractions([uuid.uuid4()], "bench-probe", fan_out=False)
    client = redis.Redis.from_url(running.redis.url)
    message = client.lindex("bench-probe", 0)
    client.delete("bench-probe")
    assert message is not None
    return len(message)


def floor_once(
    running: Stack, records: list[dict[str, Any]], message_size: int
) -> dict[str, float]:
    """COPY of the rows callx would insert, then a pipelined push of one message per call."""
    now = datetime.now(UTC)
    rows = [
        (
            uuid.uuid4(),
            r["source"],
            r["external_id"],
            r["text"],
            hashlib.sha256(r["text"].encode()).hexdigest(),
            r["language"],
            datetime.fromisoformat(r["occurred_at"]),
            json.dumps(r["metadata"]),
            None,
            "batch",
            "queued",
            0,
            now,
            now,
        )
        for r in records
    ]
    payload = b"x" * message_size
    client = redis.Redis.from_url(running.redis.url)
    with psycopg.connect(running.dsn) as conn:
        started = time.perf_counter()
        with (
            conn.cursor() as cursor,
            cursor.copy(COPY_TRANSCRIPTS) as copy,
        ):
            copy.set_types(COPY_TYPES)
            for row in rows:
                copy.write_row(row)
        conn.commit()
        copied = time.perf_counter()
        pipe = client.pipeline(transaction=False)
        for _ in rows:
            pipe.lpush("bench-floor", payload)
        pipe.execute()
        pushed = time.perf_counter()
    client.delete("bench-floor")
    client.close()
    return {"copy_s": copied - started, "push_s": pushed - copied, "total_s": pushed - started}


def post_batch(client: httpx.Client, records: list[dict[str, Any]], ndjson: bool) -> float:
    if ndjson:
        body = "\n".join(json.dumps(r) for r in records).encode()
        content_type = "application/x-ndjson"
    else:
        body = json.dumps(records).encode()
        content_type = "application/json"
    started = time.perf_counter()
    response = client.post("/v1/batches", content=body, headers={"content-type": content_type})
    elapsed = time.perf_counter() - started
    if response.status_code != 202 or response.json()["accepted"] != len(records):
        raise RuntimeError(f"batch not accepted: {response.status_code} {response.text[:500]}")
    return elapsed


async def _single_submissions(url: str, seconds: float, clients: int) -> dict[str, Any]:
    records = iter(make_records(200_000))
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        for _ in range(20):  # warm-up: connections, the pool, code paths
            await client.post("/v1/transcripts", json=next(records))
        deadline = time.perf_counter() + seconds

        async def one_client() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    response = await client.post("/v1/transcripts", json=next(records))
                except httpx.TransportError:
                    errors += 1
                    continue
                if response.status_code == 202:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors,
        "elapsed_s": elapsed,
        "rps": len(latencies) / elapsed,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p95_ms": 1000 * latencies[int(len(latencies) * 0.95)],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
    }


def run(quick: bool) -> list[BenchRow]:
    repeats = 3 if quick else 5
    seconds = 5.0 if quick else 10.0
    with stack("callx_ingest") as running:
        url = running.start_api()
        size = celery_message_size(running)
        floors: list[dict[str, float]] = []
        times: dict[str, list[float]] = {"json": [], "ndjson": []}
        with httpx.Client(base_url=url, timeout=300) as client:
            post_batch(client, make_records(500), ndjson=False)  # warm-up
            # Interleaved, so that noise on a shared machine hits floor and callx alike.
            for _ in range(repeats):
                floors.append(floor_once(running, make_records(BATCH), size))
                for kind in ("json", "ndjson"):
                    times[kind].append(post_batch(client, make_records(BATCH), kind == "ndjson"))
        single = asyncio.run(_single_submissions(url, seconds, CLIENTS))

    floor_s = statistics.median(f["total_s"] for f in floors)
    floor_rate = BATCH / floor_s
    rows = []
    for kind, label in (("json", "JSON array"), ("ndjson", "NDJSON")):
        callx_s = statistics.median(times[kind])
        rate = BATCH / callx_s
        ratio = rate / floor_rate
        rows.append(
            BenchRow(
                name=f"POST /v1/batches, {BATCH:,} calls, {label}",
                unit="calls/s",
                floor=floor_rate,
                callx=rate,
                ratio=ratio,
                target=f">= {TARGET_RATIO}x floor and >= {TARGET_RATE:,.0f}/s",
                met=ratio >= TARGET_RATIO and rate >= TARGET_RATE,
                better="higher",
                notes="floor: COPY of the same rows + pipelined LPUSH of one Celery-sized "
                "message per call; uvicorn runs one process",
                extra={
                    "repeats_s": times[kind],
                    "floor_runs": floors,
                    "celery_message_bytes": size,
                },
            )
        )
    rows.append(
        BenchRow(
            name=f"POST /v1/transcripts, {CLIENTS} concurrent clients, {seconds:.0f} s",
            unit="requests/s",
            floor=None,
            callx=single["rps"],
            ratio=None,
            target="report",
            met=None,
            better="higher",
            notes=f"p50 {single['p50_ms']:.1f} ms, p95 {single['p95_ms']:.1f} ms, "
            f"p99 {single['p99_ms']:.1f} ms, {single['errors']} errors; the clients share the "
            "machine with the server",
            extra=single,
        )
    )
    rows.append(
        BenchRow(
            name="POST /v1/transcripts p95 latency, 50 clients",
            unit="ms",
            floor=None,
            callx=single["p95_ms"],
            ratio=None,
            target="report",
            met=None,
        )
    )
    return rows


def main(argv: list[str]) -> None:
    rows = run(quick="--quick" in argv)
    report(rows, Path("reports/bench-ingest.json"))


if __name__ == "__main__":
    main(sys.argv[1:])
