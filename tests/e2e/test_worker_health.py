"""/readyz and /metrics tell a dead worker pool, and calls queued for a taxonomy no live worker
serves, from a healthy service; a worker never extracts a call with another taxonomy than the
one it was queued for. Real processes: `callx serve`, `callx worker`, PostgreSQL, Redis."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import httpx

from app.config import Settings
from support.env import fake_worker_env, process_env
from support.services import CallxProcess, serve_api, wait_for

FAST_HEARTBEAT = {"CALLX_BROKER__HEARTBEAT_INTERVAL_S": "1"}
ACME = """
version: acme-7
reasons:
  - {code: repair, label: repair, definition: something is broken}
  - {code: other, label: other, definition: anything else}
"""


def readyz(url: str) -> httpx.Response:
    return httpx.get(url + "/readyz", timeout=10)


def test_readyz_follows_the_workers_heartbeats(
    api_url: str, settings: Settings, start_callx: Callable[..., CallxProcess]
) -> None:
    down = readyz(api_url)
    assert down.status_code == 503
    assert down.json()["checks"]["queue:interactive"].startswith("no live worker")
    assert down.json()["checks"]["database"] == "ok"
    # A load balancer's probe of the API alone still passes.
    assert httpx.get(api_url + "/readyz?workers=false", timeout=10).status_code == 200

    worker = start_callx(
        ["worker", "--concurrency", "1"], fake_worker_env(settings, 0.0) | FAST_HEARTBEAT
    )
    wait_for(lambda: readyz(api_url).status_code == 200, 60, "a live worker in /readyz")
    queues = readyz(api_url).json()["queues"]
    assert [w["backend"] for w in queues["batch"]["workers"]] == ["fake"]
    assert queues["interactive"]["workers"][0]["model"] == "fake-keywords-1"
    assert 'callx_workers_live{queue="batch"} 1.0' in httpx.get(api_url + "/metrics").text

    worker.stop(signal.SIGKILL)  # dies without a word: its heartbeats stop
    wait_for(lambda: readyz(api_url).status_code == 503, 30, "/readyz to see the dead worker")
    assert readyz(api_url).json()["checks"]["queue:batch"].startswith("no live worker")


def test_calls_queued_for_a_taxonomy_no_worker_serves_wait_and_show(
    settings: Settings,
    clean_db: None,
    clean_broker: None,
    start_callx: Callable[..., CallxProcess],
    tmp_path: Path,
) -> None:
    acme = tmp_path / "acme.yaml"
    acme.write_text(ACME)
    url = serve_api(start_callx, process_env(settings, CALLX_EXTRACTION__TAXONOMY_PATH=str(acme)))
    # A worker with the default taxonomy: it must leave acme-7's calls alone.
    default_worker = start_callx(
        ["worker", "--concurrency", "1"], fake_worker_env(settings, 0.0) | FAST_HEARTBEAT
    )
    wait_for(lambda: readyz(url).json()["queues"]["interactive"]["workers"] != [], 60, "the worker")
    created = httpx.post(url + "/v1/transcripts", json={"text": "Client: my boiler is broken"})
    assert created.status_code == 202
    call_id = created.json()["id"]
    wait_for(
        lambda: call_id in default_worker.log() and "not claimable" in default_worker.log(),
        30,
        "the default worker to see the call and leave it",
    )
    assert httpx.get(f"{url}/v1/transcripts/{call_id}").json()["status"] == "queued"
    ready = readyz(url)
    assert ready.status_code == 503
    assert ready.json()["queues"]["interactive"]["unserved"] == {"acme-7": 1}
    assert "acme-7" in ready.json()["checks"]["queue:interactive"]
    metrics = httpx.get(url + "/metrics").text
    assert 'callx_calls_unserved{queue="interactive",taxonomy_version="acme-7"} 1.0' in metrics

    start_callx(
        ["worker", "--concurrency", "1"],
        fake_worker_env(settings, 0.0)
        | FAST_HEARTBEAT
        | {"CALLX_EXTRACTION__TAXONOMY_PATH": str(acme)},
    )
    wait_for(
        lambda: httpx.get(f"{url}/v1/transcripts/{call_id}").json()["status"] == "succeeded",
        90,
        "the acme worker to extract the call",
    )
    extraction = httpx.get(f"{url}/v1/transcripts/{call_id}").json()["extraction"]
    assert extraction["taxonomy_version"] == "acme-7" and extraction["reason"] in (
        "repair",
        "other",
    )
    wait_for(lambda: readyz(url).status_code == 200, 30, "/readyz once every call is served")
