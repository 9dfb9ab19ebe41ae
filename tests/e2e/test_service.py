"""The whole service: API process -> Redis -> Celery worker process -> PostgreSQL."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import redis
from sqlalchemy import create_engine, text

from app.config import Settings
from app.llm.model_files import DEFAULT_ADAPTER, DEFAULT_READER, file_sha256
from schemas.taxonomy import load_taxonomy
from support.calls import CALLS
from support.env import process_env
from support.services import CallxProcess, RedisServer, serve_api, wait_for

CODES = set(load_taxonomy().codes)


def wait_batch_done(client: httpx.Client, batch_id: str, timeout: float) -> dict:
    state: dict = {}

    def done() -> bool:
        state.update(client.get(f"/v1/batches/{batch_id}").json())
        return bool(state["done"])

    wait_for(done, timeout, f"batch {batch_id} to finish", interval=0.5)
    return state


def start_model_worker(
    start_callx: Callable[..., CallxProcess], settings: Settings, **review: str
) -> CallxProcess:
    """A Celery worker of the real llama.cpp model, with review settings (`threshold="0.9"`)."""
    env = {f"CALLX_REVIEW__{name.upper()}": value for name, value in review.items()}
    return start_callx(
        ["worker", "--concurrency", "1"],
        process_env(settings, CALLX_EXTRACTION__BACKEND="llamacpp", **env),
        "worker",
    )


def test_single_batch_results_and_analytics_with_the_real_model(
    api_url: str, settings: Settings, start_callx: Callable[..., CallxProcess]
) -> None:
    # A threshold above every calibrated confidence of these calls: all go to review.
    start_model_worker(start_callx, settings, threshold="0.999", audit_rate="0.5")
    client = httpx.Client(base_url=api_url, timeout=30)

    # One transcript: 202, then the same again is 200 with the same id, a different text 409.
    first = client.post("/v1/transcripts", json={**CALLS[0], "source": "crm"})
    assert first.status_code == 202, first.text
    assert first.json()["status"] == "queued"
    again = client.post("/v1/transcripts", json={**CALLS[0], "source": "crm"})
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    conflict = client.post(
        "/v1/transcripts", json={**CALLS[0], "source": "crm", "text": "Client: autre appel"}
    )
    assert conflict.status_code == 409
    assert "different text" in conflict.json()["detail"]

    # A batch in NDJSON with one broken line: the others are accepted, the bad one reported.
    lines = [
        json.dumps({**call, "occurred_at": f"2026-11-{10 + i:02d}T10:00:00Z"})
        for i, call in enumerate(CALLS[1:])
    ]
    lines.insert(2, '{"text": "broken json')
    response = client.post(
        "/v1/batches",
        content="\n".join(lines).encode(),
        headers={"content-type": "application/x-ndjson"},
    )
    assert response.status_code == 202, response.text
    batch = response.json()
    assert (batch["received"], batch["accepted"], batch["rejected"]) == (6, 5, 1)
    assert batch["errors"][0]["line"] == 3
    assert "invalid JSON" in batch["errors"][0]["errors"][0]

    state = wait_batch_done(client, batch["id"], timeout=240)
    assert state["counts"]["succeeded"] == 5, state

    # Results: every extraction valid, with its provenance.
    single = client.get(f"/v1/transcripts/{first.json()['id']}")
    wait_for(
        lambda: client.get(f"/v1/transcripts/{first.json()['id']}").json()["status"] == "succeeded",
        120,
        "single call",
    )
    single = client.get(
        "/v1/transcripts", params={"source": "crm", "external_id": "fr-panne-1"}
    ).json()
    extraction = single["extraction"]
    assert extraction["reason"] in CODES
    assert extraction["backend"] == "llamacpp"
    # The default model with the fine-tuned adapter that ships with callx.
    assert extraction["model"] == "gemma-3-270m-q4_k_m.gguf+callx-default.gguf"
    # The adapter learnt the default list: it answers by itself, no reader reads it.
    assert extraction["reader_sha256"] is None
    # Its card holds a calibration for the default taxonomy: the confidence is a probability.
    assert extraction["confidence_calibrated"] is True and 0 < extraction["confidence"] < 1
    assert 0 < extraction["product_confidence"] <= 1  # the model's own, of null or the name
    assert (
        extraction["prompt_version"] and extraction["taxonomy_version"] == load_taxonomy().version
    )
    assert extraction["prompt_tokens"] > 50 and extraction["completion_tokens"] > 0
    assert extraction["attempts"] == 1 and extraction["truncated"] is False
    assert 0 < extraction["confidence"] <= 1

    # Listing with keyset pagination: 6 results over pages of 4 and 2, no overlap.
    page1 = client.get("/v1/extractions", params={"limit": 4}).json()
    page2 = client.get(
        "/v1/extractions", params={"limit": 4, "cursor": page1["next_cursor"]}
    ).json()
    ids = [i["transcript_id"] for i in page1["items"] + page2["items"]]
    assert len(page1["items"]) == 4 and len(page2["items"]) == 2 and len(set(ids)) == 6
    assert page2["next_cursor"] is None
    assert all(i["extraction"]["reason"] in CODES for i in page1["items"] + page2["items"])

    # Analytics: counts per reason and day add up to the 6 calls; products sum to those named.
    reasons = client.get("/v1/analytics/reasons", params={"bucket": "day"}).json()
    assert sum(item["count"] for item in reasons["items"]) == 6
    november = client.get(
        "/v1/analytics/reasons",
        params={
            "bucket": "month",
            "since": "2026-11-10T00:00:00Z",
            "until": "2026-11-15T00:00:00Z",
        },
    ).json()
    assert sum(i["count"] for i in november["items"]) == 5
    assert {i["bucket"][:10] for i in november["items"]} == {"2026-11-01"}
    products = client.get("/v1/analytics/products", params={"limit": 50}).json()["items"]
    named = [i for i in page1["items"] + page2["items"] if i["extraction"]["product"]]
    assert sum(p["total"] for p in products) == len(named)
    assert all(sum(p["by_reason"].values()) == p["total"] for p in products)

    # The review loop on the real model's answers: every call below the threshold is queued,
    # lowest confidence first, with the decision the worker made.
    queue = client.get("/v1/review").json()["items"]
    assert len(queue) == 6
    # The audit sample first (its unbiased figure needs its calls reviewed), then the others.
    audit = [item["extraction"]["review"]["in_audit"] for item in queue]
    assert audit == sorted(audit, reverse=True)
    others = [
        item["extraction"]["confidence"]
        for item in queue
        if not item["extraction"]["review"]["in_audit"]
    ]
    assert others == sorted(others)
    for item in queue:
        decision = item["extraction"]["review"]
        assert decision["cause"] == "low_confidence" and decision["threshold"] == 0.999
        assert decision["audit_rate"] == 0.5 and decision["waiting"] is True
    # A reviewer corrects the first call: it leaves the queue, its answer changes.
    unsure = queue[0]
    corrected = "other" if unsure["extraction"]["reason"] != "other" else "billing"
    put = client.put(
        f"/v1/transcripts/{unsure['transcript_id']}/label",
        json={"reason": corrected, "product": None, "note": "checked by hand"},
    )
    assert put.status_code == 200, put.text
    assert len(client.get("/v1/review").json()["items"]) == 5
    answer = client.get(f"/v1/transcripts/{unsure['transcript_id']}").json()["answer"]
    assert answer == {"reason": corrected, "product": None, "by": "label"}
    after = client.get("/v1/analytics/reasons", params={"bucket": "day"}).json()["items"]
    assert sum(i["count"] for i in after if i["reason"] == corrected) == 1 + sum(
        i["count"] for i in reasons["items"] if i["reason"] == corrected
    )
    quality = client.get("/v1/quality").json()
    assert quality["auto_accepted"] == {
        **quality["auto_accepted"],
        "calls": 6,
        "accepted": 0,
        "share": 0.0,
    }
    audited = quality["audit_calls"]
    assert audited == sum(item["extraction"]["review"]["in_audit"] for item in queue)
    assert quality["audit_reviewed"] + quality["low_confidence_reviewed"]["reason"]["n"] == 1


def test_a_worker_draws_sure_calls_for_people_when_exploring(
    api_url: str, settings: Settings, start_callx: Callable[..., CallxProcess]
) -> None:
    # At threshold 0.01, far below what the model's greedy choice among seven reasons scores,
    # every call is sure; at rate 1 every one is drawn, with no audit sample.
    start_model_worker(start_callx, settings, threshold="0.01", audit_rate="0", explore_rate="1")
    client = httpx.Client(base_url=api_url, timeout=30)
    response = client.post("/v1/batches", json=[{"text": c["text"]} for c in CALLS[:3]])
    assert response.status_code == 202, response.text
    state = wait_batch_done(client, response.json()["id"], timeout=240)
    assert state["counts"]["succeeded"] == 3, state
    queue = client.get("/v1/review").json()["items"]
    assert len(queue) == 3
    for item in queue:
        extraction = item["extraction"]
        assert extraction["confidence_calibrated"] and extraction["confidence"] >= 0.01
        assert extraction["review"]["cause"] == "explore" and extraction["review"]["waiting"]
    accepted = client.get("/v1/quality").json()["auto_accepted"]
    assert (accepted["calls"], accepted["accepted"], accepted["explored"]) == (3, 3, 3)


SHOP = """
version: shop-1
reasons:
  - code: faulty_item
    label: {en: faulty item, fr: article défectueux}
    definition: {en: "something the customer bought does not work", fr: "un article acheté ne fonctionne pas"}
  - code: parcel_tracking
    label: {en: parcel tracking, fr: suivi de colis}
    definition: {en: "where an order is, when it arrives", fr: "où en est une commande, quand elle arrive"}
  - code: refund_request
    label: {en: refund request, fr: demande de remboursement}
    definition: {en: "the customer wants their money back", fr: "le client veut être remboursé"}
"""


def test_a_worker_reads_the_customers_own_list_with_the_shipped_reader(
    settings: Settings,
    clean_db: None,
    clean_broker: None,
    start_callx: Callable[..., CallxProcess],
    tmp_path: Path,
) -> None:
    """A list the default adapter never learnt: the worker chooses the reason by reading its
    definitions with the shipped reader, records which reader did, and sends the call to a
    person (its confidence was never measured on this list)."""
    shop = tmp_path / "shop.yaml"
    shop.write_text(SHOP, "utf-8")
    env = process_env(
        settings, CALLX_EXTRACTION__BACKEND="llamacpp", CALLX_EXTRACTION__TAXONOMY_PATH=str(shop)
    )
    url = serve_api(start_callx, env)
    worker = start_callx(["worker", "--concurrency", "1"], env, "worker")
    created = httpx.post(
        url + "/v1/transcripts",
        json={"text": "Client: I ordered a kettle ten days ago and it still has not come.",
              "language": "en"},
        timeout=10,
    )  # fmt: skip
    assert created.status_code == 202, created.text
    call_url = f"{url}/v1/transcripts/{created.json()['id']}"
    wait_for(
        lambda: httpx.get(call_url).json()["status"] in ("succeeded", "failed"),
        240,
        "the shop call",
    )
    extraction = httpx.get(call_url).json()["extraction"]
    assert extraction["status"] == "succeeded", extraction["error"]
    assert extraction["taxonomy_version"] == "shop-1"
    assert extraction["reason"] in {"faulty_item", "parcel_tracking", "refund_request"}
    assert extraction["adapter_sha256"] == file_sha256(DEFAULT_ADAPTER)
    assert extraction["reader_sha256"] == file_sha256(DEFAULT_READER)
    assert extraction["confidence_calibrated"] is False
    assert extraction["review"]["cause"] == "uncalibrated"
    assert "callx-reader.gguf" in worker.log()
    engine = create_engine(settings.database.url)
    with engine.connect() as connection:
        stored = connection.execute(
            text("SELECT reader_sha256 FROM extractions WHERE is_current")
        ).scalar_one()
    engine.dispose()
    assert stored == file_sha256(DEFAULT_READER)


def test_a_batch_of_10000_is_accepted_and_queued_after_commit(
    api_url: str, database_url: str, redis_server: RedisServer
) -> None:
    records = [
        {
            "external_id": f"bulk-{i}",
            "source": "nightly",
            "text": f"Client: appel numéro {i}, ma box ne marche plus.",
        }
        for i in range(10_000)
    ]
    client = httpx.Client(base_url=api_url, timeout=120)
    started = time.perf_counter()
    response = client.post("/v1/batches", json=records)
    elapsed = time.perf_counter() - started
    assert response.status_code == 202, response.text[:500]
    body = response.json()
    assert (body["accepted"], body["rejected"], body["duplicates"]) == (10_000, 0, 0)
    progress = client.get(f"/v1/batches/{body['id']}").json()
    assert progress["counts"]["queued"] == 10_000 and not progress["done"]
    # Every accepted transcript is on the batch queue (no worker is running), in chunks of ids
    # that a worker fans out.
    stored = transcript_ids(database_url, "nightly")
    assert len(stored) == 10_000 and queued_ids(redis_server) == stored
    # Sending the same batch again queues nothing new.
    again = client.post("/v1/batches", json=records).json()
    assert (again["accepted"], again["duplicates"]) == (0, 10_000)
    assert len(queued_ids(redis_server)) == 10_000
    print(f"10,000-call batch accepted in {elapsed:.2f}s")


def queued_ids(redis_server: RedisServer) -> set[str]:
    """The transcript ids in the messages waiting on the batch queue."""
    ids: set[str] = set()
    for raw in redis.Redis.from_url(redis_server.url).lrange("batch", 0, -1):
        message = json.loads(raw)
        args = json.loads(base64.b64decode(message["body"]))[0]
        assert message["headers"]["task"] == "callx.dispatch_extractions"
        ids.update(args[0])
    return ids


def transcript_ids(database_url: str, source: str) -> set[str]:
    engine = create_engine(database_url)
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT id FROM transcripts WHERE source = :source"), {"source": source}
        ).all()
    engine.dispose()
    return {str(r[0]) for r in rows}
